#!/usr/bin/env bash
# Analytics benchmark, in one run on this machine: a ClickHouse server (Debian's package,
# deploy/clickhouse/config.xml) on loopback; the pipeline's events/s into it and the query
# times (cargo bench -p tollgate-analytics); then the proxy's requests/s with analytics off,
# embedded and ClickHouse against the same nginx backend, driven by wrk, in rounds that each
# start with the next mode (so that drift and order hit the three alike). Prints the figures,
# and the CPU time each run cost per request (from /proc): Tollgate's proxy thread, its other
# threads (the batcher and the sinks), and the ClickHouse server (its merges included), and how
# busy Tollgate's cores were (pinned: below ~95 %, the gateway waited for wrk or the backend).
# The CPU figures vary less than requests/s on a shared machine and show where the cost lies.
#   deploy/bench/analytics.sh [duration_seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
rounds=${2:-3}
source deploy/bench/lib.sh
bench_setup nginx wrk clickhouse-server

start_clickhouse
ch_pid=${pids[-1]}

echo "== cargo bench -p tollgate-analytics --bench pipeline"
TOLLGATE_BENCH_CLICKHOUSE_URL=$ch_url cargo bench --quiet -p tollgate-analytics --bench pipeline 2>&1 | grep -v '^$'

start_backend
one_route_file "$work/one.yaml"

# Where processes run. "shared": anywhere on the machine's cores, Tollgate's batcher and the
# ClickHouse server competing with wrk and the backend. "pinned": Tollgate (all its threads)
# alone on CPU 0, wrk, the backend and ClickHouse on CPU 1, as they would be on other hosts:
# then analytics cost only what they cost the gateway's own core.
place() { # $1 = shared|pinned
  local cpus=0-$(( $(nproc) - 1 ))
  [ "$1" = pinned ] && cpus=1
  for p in "${pids[@]}"; do taskset -apc "$cpus" "$p" >/dev/null 2>&1 || true; done
  for p in $(pgrep -f "nginx: worker" || true); do taskset -apc "$cpus" "$p" >/dev/null 2>&1 || true; done
  # tg_stat: the /proc/stat line of Tollgate's cores
  if [ "$1" = pinned ]; then tg_cpus=0; wrk_cpus=1; tg_stat=cpu0; else tg_cpus=$cpus; wrk_cpus=$cpus; tg_stat=cpu; fi
}

# Busy and idle ticks of the /proc/stat line $1 (idle includes iowait).
cpu_ticks() { awk -v line="$1" '$1 == line {print $2 + $3 + $4 + $7 + $8, $5 + $6}' /proc/stat; }

# CPU ticks (user + system) of the threads of process $1 whose name matches $2.
ticks() { awk -v pat="$2" '$2 ~ pat {s += $14 + $15} END {print s + 0}' /proc/"$1"/task/*/stat; }

# Microseconds of CPU per request from two tick counts and a request count.
per_request() { python3 -c "print(f'{($2 - $1) * 1e6 / $(getconf CLK_TCK) / $3:.2f}')"; }

# Waits (up to 60 s) until the ClickHouse server has no merge running, so that the merges of
# one run's inserts are charged to that run and not to the next.
settle_clickhouse() {
  for _ in $(seq 120); do
    [ "$(curl -fs "$ch_url" --data-binary 'SELECT count() FROM system.merges')" = 0 ] && return
    sleep 0.5
  done
}

# Each ClickHouse run inserts into a fresh database, dropped once the run is counted, so that
# every run's server starts from the same empty table: in one shared database, a later round's
# merges would also rewrite the earlier rounds' events, and the rounds would not be alike.
# What re-merging costs a long-lived table over its life is not in these figures.
run() { # $1 = TOLLGATE_ANALYTICS; prints "rps p99 flushed dropped busy proxy_us others_us clickhouse_us"
  rm -rf "$work/data-$1"; mkdir -p "$work/data-$1"
  run_under=(taskset -c "$tg_cpus")
  local database=bench_run
  TOLLGATE_ANALYTICS=$1 TOLLGATE_CLICKHOUSE_URL=$ch_url TOLLGATE_CLICKHOUSE_DATABASE=$database \
    TOLLGATE_DATA_DIR="$work/data-$1" start_tollgate "$work/one.yaml"
  local p0 a0 c0 p1 a1 c1 n s0 s1
  p0=$(ticks "$TG_PID" '^[(]tollgate-proxy'); a0=$(ticks "$TG_PID" .); c0=$(ticks "$ch_pid" .)
  s0=$(cpu_ticks "$tg_stat")
  taskset -c "$wrk_cpus" wrk -t1 -c32 -d${dur}s --latency "http://127.0.0.1:$TG_PORT/api/x" > "$work/wrk.out"
  s1=$(cpu_ticks "$tg_stat")
  sleep 2
  p1=$(ticks "$TG_PID" '^[(]tollgate-proxy'); a1=$(ticks "$TG_PID" .)
  local metrics; metrics=$(curl -fs "http://127.0.0.1:$TG_STATUS/metrics")
  kill "$TG_PID"; wait "$TG_PID" 2>/dev/null || true
  if [ "$1" = clickhouse ]; then settle_clickhouse; fi
  c1=$(ticks "$ch_pid" .)
  curl -fs "$ch_url" --data-binary "DROP DATABASE IF EXISTS $database" >/dev/null
  n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  local flushed dropped
  flushed=$(echo "$metrics" | awk '/^tollgate_analytics_events_flushed_total/ {print $2}')
  dropped=$(echo "$metrics" | awk '/^tollgate_analytics_events_dropped_total/ {print $2}')
  echo "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out") $(awk '$1=="99%" {print $2}' "$work/wrk.out") \
${flushed:--} ${dropped:--} $(python3 -c "b0, i0, b1, i1 = map(int, '$s0 $s1'.split()); print(f'{(b1 - b0) / (b1 - b0 + i1 - i0):.0%}')") \
$(per_request "$p0" "$p1" "$n") \
$(per_request "$((a0 - p0))" "$((a1 - p1))" "$n") $(per_request "$c0" "$c1" "$n")"
}

echo
echo "wrk -t1 -c32 -d${dur}s, one proxy worker, $rounds rounds per placement ($(date -u '+%F %H:%M') UTC, $(nproc) cores)"
echo
echo "| placement | round | analytics | requests/s | p99 | events flushed | dropped | Tollgate's cores busy | CPU µs per request: proxy thread | other Tollgate threads | ClickHouse server |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
costs=()
modes=(off embedded clickhouse)
for placement in shared pinned; do
  place "$placement"
  declare -A rps=() tg=() server=()
  for round in $(seq "$rounds"); do
    for k in 0 1 2; do
      mode=${modes[(k + round - 1) % 3]}
      read -r r p99 flushed dropped busy proxy others ch < <(run "$mode")
      echo "| $placement | $round | $mode | $r | $p99 | $flushed | $dropped | $busy | $proxy | $others | $ch |"
      rps[$mode]+="$r,"; tg[$mode]+="$proxy+$others,"; server[$mode]+="$ch,"
    done
  done
  costs+=("$(python3 - "$placement" "${rps[off]}" "${rps[embedded]}" "${rps[clickhouse]}" \
    "${tg[off]}" "${tg[embedded]}" "${tg[clickhouse]}" "${server[clickhouse]}" <<'PY'
import statistics, sys
# Round by round: requests/s and Tollgate's CPU µs per request (off, embedded, ClickHouse),
# then the ClickHouse server's CPU µs per request in the ClickHouse runs.
placement = sys.argv[1]
runs = [[sum(float(n) for n in run.split("+")) for run in a.split(",") if run] for a in sys.argv[2:]]
(off, emb, ch), (tg_off, tg_emb, tg_ch), server = runs[0:3], runs[3:6], runs[6]
mean = statistics.mean
def cost(on):
    # Mean against mean, and each round against the same round's run without analytics: a
    # round's runs follow each other, so slow drift hits them alike; their spread shows the
    # machine's noise.
    paired = [1 - a / o for a, o in zip(on, off)]
    return (f"{1 - sum(on) / sum(off):.1%} (rounds: {', '.join(f'{c:.1%}' for c in paired)};"
            f" median {statistics.median(paired):.1%})")
def more(cpu):
    return f"{cpu:.2f} µs ({cpu / mean(tg_off) - 1:+.1%})"
print(f"  {placement}, requests/s: embedded {cost(emb)}, ClickHouse {cost(ch)}")
print(f"  {placement}, CPU per request: Tollgate without analytics {mean(tg_off):.2f} µs,"
      f" embedded {more(mean(tg_emb))}, ClickHouse {more(mean(tg_ch))},"
      f" ClickHouse with its server {more(mean(tg_ch) + mean(server))}")
PY
)")
  unset rps tg server
done
place shared
echo
echo "cost of analytics (requests/s: mean of the $rounds rounds against analytics off, and each round against its own; CPU time per request: mean of the rounds):"
printf '%s\n' "${costs[@]}"

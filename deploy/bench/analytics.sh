#!/usr/bin/env bash
# Analytics benchmark, in one run on this machine: a ClickHouse server (Debian's package,
# deploy/clickhouse/config.xml) on loopback; the pipeline's events/s into it and the query
# times (cargo bench -p tollgate-analytics); then the proxy's requests/s with analytics off,
# embedded and ClickHouse against the same nginx backend, driven by wrk, in rounds that each
# start with the next mode (so that drift and order hit the three alike). Prints the figures,
# and the CPU time each run cost per request (from /proc): Tollgate's proxy thread, its other
# threads (the batcher and the sinks), and the ClickHouse server (its merges included). The
# CPU figures vary less than requests/s on a shared machine and show where the cost lies.
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
  if [ "$1" = pinned ]; then tg_cpus=0; wrk_cpus=1; else tg_cpus=$cpus; wrk_cpus=$cpus; fi
}

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

run() { # $1 = TOLLGATE_ANALYTICS; prints "rps p99 flushed dropped proxy_us others_us clickhouse_us"
  rm -rf "$work/data-$1"; mkdir -p "$work/data-$1"
  run_under=(taskset -c "$tg_cpus")
  TOLLGATE_ANALYTICS=$1 TOLLGATE_CLICKHOUSE_URL=$ch_url TOLLGATE_DATA_DIR="$work/data-$1" \
    start_tollgate "$work/one.yaml"
  local p0 a0 c0 p1 a1 c1 n
  p0=$(ticks "$TG_PID" '^[(]tollgate-proxy'); a0=$(ticks "$TG_PID" .); c0=$(ticks "$ch_pid" .)
  taskset -c "$wrk_cpus" wrk -t1 -c32 -d${dur}s --latency "http://127.0.0.1:$TG_PORT/api/x" > "$work/wrk.out"
  sleep 2
  p1=$(ticks "$TG_PID" '^[(]tollgate-proxy'); a1=$(ticks "$TG_PID" .)
  local metrics; metrics=$(curl -fs "http://127.0.0.1:$TG_STATUS/metrics")
  kill "$TG_PID"; wait "$TG_PID" 2>/dev/null || true
  if [ "$1" = clickhouse ]; then settle_clickhouse; fi
  c1=$(ticks "$ch_pid" .)
  n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  local flushed dropped
  flushed=$(echo "$metrics" | awk '/^tollgate_analytics_events_flushed_total/ {print $2}')
  dropped=$(echo "$metrics" | awk '/^tollgate_analytics_events_dropped_total/ {print $2}')
  echo "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out") $(awk '$1=="99%" {print $2}' "$work/wrk.out") \
${flushed:--} ${dropped:--} $(per_request "$p0" "$p1" "$n") \
$(per_request "$((a0 - p0))" "$((a1 - p1))" "$n") $(per_request "$c0" "$c1" "$n")"
}

echo
echo "wrk -t1 -c32 -d${dur}s, one proxy worker, $rounds rounds per placement ($(date -u '+%F %H:%M') UTC, $(nproc) cores)"
echo
echo "| placement | round | analytics | requests/s | p99 | events flushed | dropped | CPU µs per request: proxy thread | other Tollgate threads | ClickHouse server |"
echo "|---|---|---|---|---|---|---|---|---|---|"
costs=()
modes=(off embedded clickhouse)
for placement in shared pinned; do
  place "$placement"
  declare -A sum=() cpu=()
  for round in $(seq "$rounds"); do
    for k in 0 1 2; do
      mode=${modes[(k + round - 1) % 3]}
      read -r rps p99 flushed dropped proxy others server < <(run "$mode")
      echo "| $placement | $round | $mode | $rps | $p99 | $flushed | $dropped | $proxy | $others | $server |"
      sum[$mode]=$(python3 -c "print(${sum[$mode]:-0} + $rps)")
      cpu[$mode]=$(python3 -c "print(${cpu[$mode]:-0} + $proxy + $others + $server)")
    done
  done
  costs+=("$(python3 -c "o=${sum[off]}; print(f'$placement: embedded {1-${sum[embedded]}/o:.1%}, ClickHouse {1-${sum[clickhouse]}/o:.1%}')")")
  costs+=("$(python3 -c "o=${cpu[off]}/$rounds; e=${cpu[embedded]}/$rounds; c=${cpu[clickhouse]}/$rounds
print(f'$placement, CPU per request (Tollgate + ClickHouse server): off {o:.2f} µs, embedded {e:.2f} µs (+{e/o-1:.1%}), ClickHouse {c:.2f} µs (+{c/o-1:.1%})')")")
  unset sum cpu
done
place shared
echo
echo "cost of analytics (requests/s, mean of the $rounds rounds against analytics off; CPU time per request, mean of the rounds):"
printf '  %s\n' "${costs[@]}"

#!/usr/bin/env bash
# Proxy benchmark, all in one run on this machine: a trivial backend (its own nginx process,
# `return 200`), nginx as a reverse proxy (a second process: one worker, keepalive upstream)
# and Tollgate (one proxy worker thread), each driven by wrk. Every target is measured in each
# of ROUNDS rounds (default 3), one after the other within a round: this machine's throughput
# drifts by 10-20 % within minutes, so a target measured once, minutes after nginx, is
# compared with a different machine. Also Tollgate's RSS idle and with 10,000 routes, and the
# time to load a 10,000-route declarative file. Analytics are off here
# (deploy/bench/analytics.sh measures their cost). Prints a Markdown table. With `--pgo`,
# first makes the profile-guided build (deploy/build-pgo.sh) and adds its rows.
#   [ROUNDS=n] deploy/bench/run.sh [duration_seconds] [--pgo]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
rounds=${ROUNDS:-3}
conns=32
pgo_bin=
[ "${2:-}" = --pgo ] && pgo_bin=$(deploy/build-pgo.sh | tail -n1)
source deploy/bench/lib.sh
bench_setup nginx wrk
start_backend; start_nginx_proxy
rss_kb() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
one_route_file "$work/one.yaml"
ten_thousand_routes_file "$work/10k.yaml"
plugins_file "$work/plugins.yaml"

# The targets, in the order each round measures them: "label|url|request header, if any".
targets=("backend direct|http://127.0.0.1:$backend/api/x|" "nginx proxy_pass|http://127.0.0.1:$nginx_proxy/api/x|")
# Adds a Tollgate target serving FILE (with the binary in `bin`).
#   add_tollgate LABEL FILE [HEADER]
add_tollgate() {
  start_tollgate "$2"
  targets+=("$1|http://127.0.0.1:$TG_PORT/api/x|${3:-}")
}
start_tollgate "$work/one.yaml"; tg_pid=$TG_PID
sleep 0.5; idle_rss=$(rss_kb "$tg_pid")
targets+=("tollgate (1 route)|http://127.0.0.1:$TG_PORT/api/x|")
t0=$(date +%s%N)
add_tollgate "tollgate (10,000 routes)" "$work/10k.yaml"; big_pid=$TG_PID
t1=$(date +%s%N)
sleep 0.5; big_rss=$(rss_kb "$big_pid")
key="apikey: $bench_key"
add_tollgate "tollgate (key-auth + rate-limiting)" "$work/plugins.yaml" "$key"
if [ -n "$pgo_bin" ]; then
  bin=$pgo_bin add_tollgate "tollgate, PGO build (1 route)" "$work/one.yaml"
  bin=$pgo_bin add_tollgate "tollgate, PGO build (key-auth + rate-limiting)" "$work/plugins.yaml" "$key"
fi
code=$(curl -s -o /dev/null -w '%{http_code}' -H "apikey: $bench_key" "http://127.0.0.1:$TG_PORT/api/x")
[ "$code" = 200 ] || { echo "key-auth set-up answered $code" >&2; exit 1; }

# One line per round and target: "round|label|requests/s p50 p99". Round 0 warms every
# target up (pools, allocator pages) for a second and is not counted. Each round starts one
# target later than the one before, so that no target always runs right after the same one.
n=${#targets[@]}
for round in 0 $(seq "$rounds"); do
  seconds=$dur; [ "$round" = 0 ] && seconds=1
  for i in $(seq 0 $((n - 1))); do
    IFS='|' read -r label url header <<< "${targets[$(( (i + round) % n ))]}"
    args=("$url"); [ -n "$header" ] && args+=(-H "$header")
    figures=$(dur=$seconds run_wrk "${args[@]}")
    # Any answer but 2xx/3xx stops the run: a refused key is fast, not a result.
    if grep -q "Non-2xx" "$work/wrk.out"; then
      echo "target '$label': $(grep Non-2xx "$work/wrk.out")" >&2; exit 1
    fi
    [ "$round" = 0 ] || echo "$round|$label|$figures" >> "$work/rounds"
  done
done
loaded_rss=$(rss_kb "$tg_pid")

echo
echo "wrk -t1 -c$conns -d${dur}s, one worker each, $rounds rounds in one run ($(date -u +%F), $(nproc) cores)"
echo
for t in "${targets[@]}"; do echo "${t%%|*}"; done > "$work/order"
python3 - "$work/rounds" "$work/order" <<'PY'
import statistics, sys
from collections import defaultdict

def us(latency):
    """wrk's latency text ("812.00us", "1.21ms") in microseconds."""
    for unit, scale in (("us", 1), ("ms", 1000), ("s", 1_000_000)):
        if latency.endswith(unit):
            return float(latency[: -len(unit)]) * scale
    raise ValueError(latency)

runs = defaultdict(list)  # label -> [(round, rps, p50, p99)]
for line in open(sys.argv[1]):
    round_, label, figures = line.rstrip("\n").split("|")
    rps, p50, p99 = figures.split()
    runs[label].append((int(round_), float(rps), us(p50), us(p99)))
nginx = {r: rps for r, rps, _, _ in runs["nginx proxy_pass"]}
print("| target | requests/s (mean) | each round | / nginx (mean of rounds) | p50 (median) | p99 (median) |")
print("|---|---|---|---|---|---|")
for label in open(sys.argv[2]).read().splitlines():
    rows = runs[label]
    ratios = [rps / nginx[r] for r, rps, _, _ in rows]
    print(f"| {label} | {statistics.mean(rps for _, rps, _, _ in rows):,.0f} "
          f"| {', '.join(f'{rps:,.0f}' for _, rps, _, _ in rows)} "
          f"| {statistics.mean(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f}) "
          f"| {statistics.median(p50 for *_, p50, _ in rows):.0f} µs "
          f"| {statistics.median(p99 for *_, p99 in rows):.0f} µs |")
PY
echo
echo "tollgate RSS: idle ${idle_rss} KiB, after the load ${loaded_rss} KiB, with 10,000 routes ${big_rss} KiB"
echo "start-up with the 10,000-route declarative file (process start to ready): $(( (t1 - t0) / 1000000 )) ms"

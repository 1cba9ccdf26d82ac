#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind, for nginx, the bare
# proxies of ceiling.sh and Tollgate (plain, with key-auth + rate-limiting, with embedded
# analytics, with analytics into a local ClickHouse server). Unlike requests/s (which drift a
# few per cent between runs here), the count repeats to within 0.1 %, so it shows what a change
# to the request path saves. It leaves out the kernel's share of each request (more than half
# of it here; see docs/benchmarks.md). Valgrind's CPU has no SHA extensions: the plugins row
# includes a software SHA-256 of the key (about 3,500 instructions) that SHA-NI makes small.
#   deploy/bench/instructions.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
conns=8

source deploy/bench/lib.sh
bench_setup nginx wrk valgrind clickhouse-server
cargo build --release --quiet -p tollgate-bench-ceiling
start_backend
start_clickhouse
one_route_file "$work/one.yaml"
plugins_file "$work/plugins.yaml"

echo
echo "callgrind, wrk -t1 -c$conns -d${dur}s after 2 s of warm-up ($(date -u '+%F %H:%M') UTC)"
echo
echo "| proxy | requests counted | instructions per request |"
echo "|---|---|---|"
under_callgrind nginx
start_nginx_proxy "master_process off;"; last_pid=${pids[-1]}
count nginx "http://127.0.0.1:$nginx_proxy/api/x"
for bare in bare-hyper bare-http1; do
  cg_name=$bare
  port=$(free_port)
  valgrind --tool=callgrind "--callgrind-out-file=$work/$bare.cg" "target/release/$bare" "127.0.0.1:$port" "127.0.0.1:$backend" \
    > "$work/$bare.log" 2>&1 & pids+=($!); last_pid=$!
  count "$bare" "http://127.0.0.1:$port/api/x"
done
under_callgrind tollgate
start_tollgate "$work/one.yaml"; last_pid=$TG_PID
count tollgate "http://127.0.0.1:$TG_PORT/api/x"
under_callgrind tollgate-plugins
start_tollgate "$work/plugins.yaml"; last_pid=$TG_PID
count "tollgate-plugins" "http://127.0.0.1:$TG_PORT/api/x" -H "apikey: $bench_key"
# Under callgrind a second of traffic is ~3,000 requests, not ~70,000: batches of 20,000 keep
# the store's cost per event near what the default 50,000-event batches give at full speed.
under_callgrind tollgate-embedded
TOLLGATE_ANALYTICS=embedded TOLLGATE_DATA_DIR="$work/data" TOLLGATE_ANALYTICS_BATCH_SIZE=20000 \
  TOLLGATE_ANALYTICS_FLUSH_MS=60000 start_tollgate "$work/one.yaml"; last_pid=$TG_PID
count "tollgate-embedded" "http://127.0.0.1:$TG_PORT/api/x"
# Tollgate's own work for ClickHouse (the batcher, the row encoding, the HTTP insert); the
# ClickHouse server's is its own process and not counted.
under_callgrind tollgate-clickhouse
TOLLGATE_ANALYTICS=clickhouse TOLLGATE_CLICKHOUSE_URL=$ch_url TOLLGATE_DATA_DIR="$work/data-ch" \
  TOLLGATE_ANALYTICS_BATCH_SIZE=20000 TOLLGATE_ANALYTICS_FLUSH_MS=60000 start_tollgate "$work/one.yaml"
last_pid=$TG_PID
count "tollgate-clickhouse" "http://127.0.0.1:$TG_PORT/api/x"

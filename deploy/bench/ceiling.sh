#!/usr/bin/env bash
# How fast can a proxy on each HTTP stack be here, before any gateway work? In one run, against
# the same trivial backend: nginx (the reference of run.sh), three bare Rust proxies that only
# forward (deploy/bench/ceiling: hyper's server and client as Tollgate uses them, a hand-written
# HTTP/1 loop on tokio, and hyper's server with a hand-written client polled in the request's
# own future) and Tollgate itself, one worker each, in alternating rounds so that the machine's
# drift hits them alike. Prints a Markdown table of the means.
#   deploy/bench/ceiling.sh [duration_seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-5}
rounds=${2:-3}
conns=32

source deploy/bench/lib.sh
bench_setup nginx wrk
cargo build --release --quiet -p tollgate-bench-ceiling
start_backend; start_nginx_proxy
one_route_file "$work/one.yaml"
start_tollgate "$work/one.yaml"

declare -A port=([nginx]=$nginx_proxy [tollgate]=$TG_PORT)
for bare in bare-hyper bare-http1 hyper-inline; do
  port[$bare]=$(free_port)
  "target/release/$bare" "127.0.0.1:${port[$bare]}" "127.0.0.1:$backend" & pids+=($!)
  wait_port "${port[$bare]}"
done

targets=(nginx bare-hyper bare-http1 hyper-inline tollgate)
declare -A sum=() p99s=()
for round in $(seq "$rounds"); do
  for t in "${targets[@]}"; do
    read -r rps _ p99 < <(run_wrk "http://127.0.0.1:${port[$t]}/api/x")
    sum[$t]=$(python3 -c "print(${sum[$t]:-0} + $rps)")
    p99s[$t]="${p99s[$t]:-}${p99s[$t]:+ / }$p99"
  done
done

echo
echo "wrk -t1 -c$conns -d${dur}s, one worker each, $rounds alternating rounds ($(date -u '+%F %H:%M') UTC, $(nproc) cores)"
echo
echo "| proxy | mean requests/s | × nginx | p99 of each round |"
echo "|---|---|---|---|"
for t in "${targets[@]}"; do
  python3 -c "print(f'| $t | {${sum[$t]}/$rounds:,.0f} | {${sum[$t]}/${sum[nginx]}:.2f} | ${p99s[$t]} |')"
done

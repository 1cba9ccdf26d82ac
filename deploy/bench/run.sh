#!/usr/bin/env bash
# Proxy benchmark, all in one run on this machine: a trivial backend (its own nginx process,
# `return 200`), nginx as a reverse proxy (a second process: one worker, keepalive upstream)
# and Tollgate (one proxy worker thread),
# each driven by wrk. Also Tollgate's RSS idle and with 10,000 routes, and the time to load a
# 10,000-route declarative file. Analytics are off here (deploy/bench/analytics.sh measures
# their cost). Prints a Markdown table. With `--pgo`, first makes the profile-guided build
# (deploy/build-pgo.sh) and adds its rows.
#   deploy/bench/run.sh [duration_seconds] [--pgo]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
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

start_tollgate "$work/one.yaml"; tg=$TG_PORT; tg_pid=$TG_PID
sleep 0.5; idle_rss=$(rss_kb "$tg_pid")

read -r d_rps d_p50 d_p99 < <(run_wrk "http://127.0.0.1:$backend/api/x")
read -r n_rps n_p50 n_p99 < <(run_wrk "http://127.0.0.1:$nginx_proxy/api/x")
read -r t_rps t_p50 t_p99 < <(run_wrk "http://127.0.0.1:$tg/api/x")
loaded_rss=$(rss_kb "$tg_pid")
if [ -n "$pgo_bin" ]; then
  bin=$pgo_bin start_tollgate "$work/one.yaml"
  read -r g_rps g_p50 g_p99 < <(run_wrk "http://127.0.0.1:$TG_PORT/api/x")
  kill "$TG_PID"
fi

t0=$(date +%s%N)
start_tollgate "$work/10k.yaml"; big_pid=$TG_PID
t1=$(date +%s%N)
sleep 0.5; big_rss=$(rss_kb "$big_pid")
read -r b_rps b_p50 b_p99 < <(run_wrk "http://127.0.0.1:$TG_PORT/api/x")
kill "$big_pid"

start_tollgate "$work/plugins.yaml"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "apikey: $bench_key" "http://127.0.0.1:$TG_PORT/api/x")
[ "$code" = 200 ] || { echo "key-auth set-up answered $code" >&2; exit 1; }
read -r p_rps p_p50 p_p99 < <(run_wrk "http://127.0.0.1:$TG_PORT/api/x" -H "apikey: $bench_key")
if [ -n "$pgo_bin" ]; then
  kill "$TG_PID"
  bin=$pgo_bin start_tollgate "$work/plugins.yaml"
  read -r q_rps q_p50 q_p99 < <(run_wrk "http://127.0.0.1:$TG_PORT/api/x" -H "apikey: $bench_key")
fi

ratio=$(python3 -c "print(f'{$t_rps/$n_rps:.2f}')")
plugin_ratio=$(python3 -c "print(f'{$p_rps/$n_rps:.2f}')")
echo
echo "wrk -t1 -c$conns -d${dur}s, one worker each, same run ($(date -u +%F), $(nproc) cores)"
echo
echo "| target | requests/s | p50 | p99 |"
echo "|---|---|---|---|"
echo "| backend direct | $d_rps | $d_p50 | $d_p99 |"
echo "| nginx proxy_pass | $n_rps | $n_p50 | $n_p99 |"
echo "| tollgate (1 route) | $t_rps | $t_p50 | $t_p99 |"
echo "| tollgate (10,000 routes) | $b_rps | $b_p50 | $b_p99 |"
echo "| tollgate (key-auth + rate-limiting) | $p_rps | $p_p50 | $p_p99 |"
if [ -n "$pgo_bin" ]; then
  echo "| tollgate, PGO build (1 route) | $g_rps | $g_p50 | $g_p99 |"
  echo "| tollgate, PGO build (key-auth + rate-limiting) | $q_rps | $q_p50 | $q_p99 |"
fi
echo
echo "tollgate / nginx requests/s: $ratio; with key-auth + rate-limiting: $plugin_ratio"
[ -n "$pgo_bin" ] && python3 -c "print(f'PGO build / nginx requests/s: {$g_rps/$n_rps:.2f}; with key-auth + rate-limiting: {$q_rps/$n_rps:.2f}')"
echo "tollgate RSS: idle ${idle_rss} KiB, after the load ${loaded_rss} KiB, with 10,000 routes ${big_rss} KiB"
echo "start-up with the 10,000-route declarative file (process start to ready): $(( (t1 - t0) / 1000000 )) ms"

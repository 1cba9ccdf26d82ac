#!/usr/bin/env bash
# Proxy benchmark, all in one run on this machine: a trivial backend (its own nginx process,
# `return 200`), nginx as a reverse proxy (a second process: one worker, keepalive upstream)
# and Tollgate (one proxy worker thread),
# each driven by wrk. Also Tollgate's RSS idle and with 10,000 routes, and the time to load a
# 10,000-route declarative file. Analytics are off here (deploy/bench/analytics.sh measures
# their cost). Prints a Markdown table.
#   deploy/bench/run.sh [duration_seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
conns=32

source deploy/bench/lib.sh
bench_setup nginx wrk
wait_port() { for _ in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

backend=$(free_port); nginx_proxy=$(free_port)
nginx_conf() { # $1 = name, $2 = http block body; one worker, as Tollgate gets one proxy thread
  cat > "$work/$1.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/$1.pid;
error_log $work/$1-error.log;
events { worker_connections 4096; }
http { access_log off; $2 }
CONF
  nginx -c "$work/$1.conf" -p "$work" & pids+=($!)
}
nginx_conf backend "server { listen 127.0.0.1:$backend; location / { default_type application/json; return 200 '{\"ok\":true}'; } }"
nginx_conf proxy "upstream backend { server 127.0.0.1:$backend; keepalive 64; }
  server { listen 127.0.0.1:$nginx_proxy;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
wait_port "$backend"; wait_port "$nginx_proxy"

rss_kb() { awk '/VmRSS/ {print $2}' /proc/$1/status; }

start_tollgate() { # $1 = declarative file; prints the proxy port, sets TG_PID
  local proxy status
  proxy=$(free_port); status=$(free_port)
  TOLLGATE_DATABASE=off TOLLGATE_DECLARATIVE_CONFIG="$1" TOLLGATE_WORKER_THREADS=1 TOLLGATE_ANALYTICS=off \
  TOLLGATE_PROXY_LISTEN=127.0.0.1:$proxy TOLLGATE_ADMIN_LISTEN=off TOLLGATE_STATUS_LISTEN=127.0.0.1:$status \
  TOLLGATE_CONSOLE_LISTEN=off TOLLGATE_PORTAL_LISTEN=off RUST_LOG=warn "$bin" > "$work/tollgate-$proxy.log" 2>&1 &
  TG_PID=$!; pids+=($TG_PID)
  for _ in $(seq 600); do curl -fs "http://127.0.0.1:$status/status" >/dev/null 2>&1 && break; sleep 0.05; done
  TG_PORT=$proxy
}

printf '_format_version: "3.0"\nservices:\n  - name: backend\n    url: http://127.0.0.1:%s\n    routes:\n      - name: api\n        paths: [/api/]\n' "$backend" > "$work/one.yaml"
{
  printf '_format_version: "3.0"\nservices:\n  - name: backend\n    url: http://127.0.0.1:%s\n    routes:\n' "$backend"
  for i in $(seq 1 9999); do printf '      - paths: [/svc%s/]\n' "$i"; done
  printf '      - name: api\n        paths: [/api/]\n'
} > "$work/10k.yaml"
# key-auth + rate-limiting on the route, with limits no benchmark reaches.
key=0123456789abcdef0123456789abcdef
cat "$work/one.yaml" - > "$work/plugins.yaml" <<YAML
        plugins:
          - name: key-auth
          - name: rate-limiting
            config: { second: 1000000000, hour: 1000000000000 }
consumers:
  - username: bench
    keyauth_credentials:
      - key: $key
YAML

start_tollgate "$work/one.yaml"; tg=$TG_PORT; tg_pid=$TG_PID
sleep 0.5; idle_rss=$(rss_kb "$tg_pid")

run_wrk() { # $1 = url, then wrk options; prints "rps p50 p99"
  wrk -t1 -c$conns -d${dur}s --latency "$@" > "$work/wrk.out"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.out")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.out")
  echo "$rps $p50 $p99"
}

read -r d_rps d_p50 d_p99 < <(run_wrk "http://127.0.0.1:$backend/api/x")
read -r n_rps n_p50 n_p99 < <(run_wrk "http://127.0.0.1:$nginx_proxy/api/x")
read -r t_rps t_p50 t_p99 < <(run_wrk "http://127.0.0.1:$tg/api/x")
loaded_rss=$(rss_kb "$tg_pid")

t0=$(date +%s%N)
start_tollgate "$work/10k.yaml"; big_pid=$TG_PID
t1=$(date +%s%N)
sleep 0.5; big_rss=$(rss_kb "$big_pid")
read -r b_rps b_p50 b_p99 < <(run_wrk "http://127.0.0.1:$TG_PORT/api/x")
kill "$big_pid"

start_tollgate "$work/plugins.yaml"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "apikey: $key" "http://127.0.0.1:$TG_PORT/api/x")
[ "$code" = 200 ] || { echo "key-auth set-up answered $code" >&2; exit 1; }
read -r p_rps p_p50 p_p99 < <(run_wrk "http://127.0.0.1:$TG_PORT/api/x" -H "apikey: $key")

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
echo
echo "tollgate / nginx requests/s: $ratio; with key-auth + rate-limiting: $plugin_ratio"
echo "tollgate RSS: idle ${idle_rss} KiB, after the load ${loaded_rss} KiB, with 10,000 routes ${big_rss} KiB"
echo "start-up with the 10,000-route declarative file (process start to ready): $(( (t1 - t0) / 1000000 )) ms"

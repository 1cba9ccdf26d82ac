#!/usr/bin/env bash
# WebSocket echo through the proxy, in one run on this machine: a WebSocket echo backend
# (tokio-tungstenite, deploy/bench/websocket) reached directly, through nginx (one worker,
# `proxy_pass` with the Upgrade headers) and through Tollgate (one proxy worker), by the same
# load client: CONNS connections (default 32), each sending a SIZE-byte message (default 128)
# and waiting for its echo, in a loop. ROUNDS rounds (default 3) alternate the three.
# Prints a Markdown table of messages/s with each one's ratio to the direct connection.
#   [ROUNDS=n] [CONNS=n] [SIZE=bytes] deploy/bench/websocket.sh [duration_seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
rounds=${ROUNDS:-3}
conns=${CONNS:-32}
size=${SIZE:-128}
source deploy/bench/lib.sh
bench_setup nginx
cargo build --release --quiet -p tollgate-bench-websocket
tool=target/release/tollgate-bench-websocket

backend=$(free_port)
"$tool" echo "127.0.0.1:$backend" & pids+=($!)
wait_port "$backend"
nginx_ws=$(free_port)
start_nginx ws "upstream backend { server 127.0.0.1:$backend; }
  server { listen 127.0.0.1:$nginx_ws;
    location / { proxy_pass http://backend; proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection upgrade; } }"
wait_port "$nginx_ws"
one_route_file "$work/ws.yaml"
start_tollgate "$work/ws.yaml"

names=("direct to the backend" "nginx proxy_pass" "tollgate")
ports=("$backend" "$nginx_ws" "$TG_PORT")
for round in 0 $(seq "$rounds"); do
  seconds=$dur; [ "$round" = 0 ] && seconds=2
  for i in 0 1 2; do
    figures=$("$tool" load "ws://127.0.0.1:${ports[$i]}/api/echo" "$conns" "$seconds" "$size")
    [ "$round" = 0 ] || echo "$round|${names[$i]}|$figures" >> "$work/rounds"
  done
done

echo
echo "WebSocket echo, $conns connections, $size-byte messages, one nginx worker and one Tollgate worker, ${dur}s per measurement, $rounds rounds in one run ($(date -u +%F), $(nproc) cores); the requests/s column counts messages echoed"
echo
for name in "${names[@]}"; do echo "$name|${names[0]}"; done > "$work/order"
python3 deploy/bench/report.py "$work/rounds" "$work/order"

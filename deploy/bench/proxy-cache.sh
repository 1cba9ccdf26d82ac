#!/usr/bin/env bash
# A proxy-cache hit against nginx's proxy_cache hit, and against proxying without a cache:
# nginx (one worker) with proxy_cache in front of the trivial backend, Tollgate (one proxy
# worker) with proxy-cache (strategy memory) on one route and none on another, driven in
# alternating rounds by wrk. Every measured request is a hit (each target is checked to answer
# X-Cache-Status: HIT / Hit first); rows are compared with nginx's hits.
#   [ROUNDS=n] deploy/bench/proxy-cache.sh [duration_seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
rounds=${ROUNDS:-3}
conns=32
source deploy/bench/lib.sh
bench_setup nginx wrk
start_backend

nginx_cache=$(free_port)
# nginx's worker (nobody, when started as root) writes the cache files.
chmod 711 "$work"; mkdir -m 777 "$work/nginx-cache"
start_nginx cache "proxy_cache_path $work/nginx-cache levels=1:2 keys_zone=bench:10m max_size=100m inactive=10m use_temp_path=off;
  upstream backend { server 127.0.0.1:$backend; keepalive 64; }
  server { listen 127.0.0.1:$nginx_cache;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_cache bench; proxy_cache_valid 200 5m; add_header X-Cache-Status \$upstream_cache_status; } }"
wait_port "$nginx_cache"

cat > "$work/cache.yaml" <<YAML
_format_version: "3.0"
services:
  - name: backend
    url: http://127.0.0.1:$backend
    routes:
      - { name: plain, paths: [/plain/] }
      - name: cached
        paths: [/cached/]
        plugins: [{ name: proxy-cache, config: { strategy: memory } }]
YAML
start_tollgate "$work/cache.yaml"

labels=("nginx proxy_cache hit" "Tollgate proxy-cache hit" "Tollgate without a cache")
urls=("http://127.0.0.1:$nginx_cache/x" "http://127.0.0.1:$TG_PORT/cached/x" "http://127.0.0.1:$TG_PORT/plain/x")
for i in 0 1; do
  curl -s -o /dev/null "${urls[$i]}"
  status=$(curl -s -o /dev/null -D - "${urls[$i]}" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache-status" {print toupper($2)}')
  [ "$status" = HIT ] || { echo "${labels[$i]}: X-Cache-Status '$status'" >&2; cat "$work"/*.log >&2; exit 1; }
done
measure_rounds
report_against_first

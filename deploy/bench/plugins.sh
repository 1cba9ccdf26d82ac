#!/usr/bin/env bash
# What the transformation and tracing plugins cost: one Tollgate process (one proxy worker) with a route
# per plugin set on the same trivial backend, driven in alternating rounds by wrk, each row
# compared with the route without plugins in the same rounds. request-transformer does what a
# typical set-up does: adds and renames headers, adds a query parameter, renders a header
# from another; the same plugin with nothing to do shows what any plugin on a route costs.
# opentelemetry samples every request and exports its spans to the backend (which answers
# the OTLP POSTs 200).
# With INSTRUCTIONS=1, also each route's user-space instructions per request, counted by
# callgrind in one more Tollgate process (they repeat within 0.1 %, unlike requests/s here).
#   [ROUNDS=n] [INSTRUCTIONS=1] deploy/bench/plugins.sh [duration_seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
rounds=${ROUNDS:-3}
conns=32
source deploy/bench/lib.sh
bench_setup nginx wrk ${INSTRUCTIONS:+valgrind}
start_backend

cat > "$work/plugins.yaml" <<YAML
_format_version: "3.0"
services:
  - name: backend
    url: http://127.0.0.1:$backend
    routes:
      - { name: plain, paths: [/plain/] }
      - { name: idle, paths: [/idle/], plugins: [{ name: request-transformer }] }
      - name: transformed
        paths: [/transformed/]
        plugins:
          - name: request-transformer
            config:
              remove: { headers: [x-internal] }
              rename: { headers: ["x-client:x-upstream-client"] }
              add:
                headers: ["x-gateway:tollgate", "x-agent:\$(headers['user-agent'])"]
                querystring: ["source:gateway"]
      - name: traced
        paths: [/traced/]
        plugins:
          - name: opentelemetry
            config:
              traces_endpoint: http://127.0.0.1:$backend/v1/traces
              sampling_rate: 1
YAML
start_tollgate "$work/plugins.yaml"

labels=("no plugins" "request-transformer, nothing to do" "request-transformer" "opentelemetry, every request sampled")
paths=(plain idle transformed traced)
for p in "${paths[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'x-client: bench' "http://127.0.0.1:$TG_PORT/$p/x")
  [ "$code" = 200 ] || { echo "/$p answered $code" >&2; cat "$work"/tollgate-*.log >&2; exit 1; }
done
urls=(); headers=()
for p in "${paths[@]}"; do urls+=("http://127.0.0.1:$TG_PORT/$p/x"); headers+=("x-client: bench"); done
measure_rounds
report_against_first

if [ -n "${INSTRUCTIONS:-}" ]; then
  echo
  echo "callgrind, wrk -t1 -c8 -d${dur}s per route after 2 s of warm-up, one process"
  echo
  echo "| route | requests counted | instructions per request |"
  echo "|---|---|---|"
  conns=8
  under_callgrind plugins
  start_tollgate "$work/plugins.yaml"; last_pid=$TG_PID
  for i in "${!paths[@]}"; do
    KEEP=1 count "${labels[$i]}" "http://127.0.0.1:$TG_PORT/${paths[$i]}/x" -H "x-client: bench"
  done
fi

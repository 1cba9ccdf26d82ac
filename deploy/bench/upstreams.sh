#!/usr/bin/env bash
# What balancing costs: one Tollgate process (one proxy worker) serving the same trivial
# backend two ways, a service with a single host and a service on an upstream of three targets
# (weight 100 each), driven in alternating rounds by wrk. The three targets are three ports of
# one nginx process: each is a target of its own to Tollgate (its own address, connection pool,
# health and breaker), while the backend's CPU cost stays that of the single host. Three nginx
# processes on this 2-core machine take CPU from the proxy and wrk (measured: about 25 % fewer
# requests/s through the upstream), which says nothing about the gateway. The upstream
# is measured as decK files declare it: round-robin with Tollgate's circuit breaker (on by
# default), and least-connections with Kong's passive health checks on. Prints a Markdown table
# with each row's ratio to the single-host service in the same rounds.
#   [ROUNDS=n] deploy/bench/upstreams.sh [duration_seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
rounds=${ROUNDS:-3}
conns=32
source deploy/bench/lib.sh
bench_setup nginx wrk
read -r first second third < <(free_ports 3)
start_backend "$first" "$second" "$third"

cat > "$work/upstreams.yaml" <<YAML
_format_version: "3.0"
services:
  - name: single
    url: http://127.0.0.1:$first
    routes: [{ name: single, paths: [/single/] }]
  - name: balanced
    host: three.upstream
    routes: [{ name: balanced, paths: [/balanced/] }]
  - name: checked
    host: checked.upstream
    routes: [{ name: checked, paths: [/checked/] }]
upstreams:
  - name: three.upstream
    targets:
      - { target: "127.0.0.1:$first" }
      - { target: "127.0.0.1:$second" }
      - { target: "127.0.0.1:$third" }
  - name: checked.upstream
    algorithm: least-connections
    healthchecks:
      passive:
        healthy: { successes: 5 }
        unhealthy: { http_failures: 5, tcp_failures: 2, timeouts: 3 }
    targets:
      - { target: "127.0.0.1:$first" }
      - { target: "127.0.0.1:$second" }
      - { target: "127.0.0.1:$third" }
YAML
start_tollgate "$work/upstreams.yaml"
for path in single balanced checked; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TG_PORT/$path/x")
  [ "$code" = 200 ] || { echo "/$path/ answered $code" >&2; exit 1; }
done

labels=("single host" "upstream, 3 targets, round-robin" "upstream, 3 targets, least-connections + passive checks")
paths=(single balanced checked)
urls=(); for p in "${paths[@]}"; do urls+=("http://127.0.0.1:$TG_PORT/$p/x"); done
measure_rounds
report_against_first

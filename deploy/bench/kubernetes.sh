#!/usr/bin/env bash
# The Kubernetes controller at size: 5,000 Ingress paths (500 Ingresses and Services with their
# EndpointSlices) and 10,000 KongConsumers with their credential Secrets, served by the test
# suite's stand-in API server (tests/kubernetes/kube_api.rs) to a release build of the gateway.
# Prints one JSON line: the first translation's time, list-to-served-snapshot time, process
# start to ready, one added path's time to reach the proxy, and the gateway's memory.
#   deploy/bench/kubernetes.sh            (bin=PATH to measure another build)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${bin:-}" ]; then
  cargo build --release --quiet --bin tollgate
  bin=$PWD/target/release/tollgate
fi
TOLLGATE_TEST_BIN=$bin cargo test --quiet --test kubernetes bench_large_cluster -- --ignored --nocapture 2>/dev/null \
  | grep '^{"paths"'

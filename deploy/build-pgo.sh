#!/usr/bin/env bash
# A profile-guided (PGO) release build of `tollgate`, for production and the benchmarks: an
# instrumented build runs proxy traffic of several kinds (see `train` below), its profile steers
# the optimised build. Needs Debian's nginx and wrk for the training traffic, and the
# llvm-profdata that matches rustc's LLVM (Debian's llvm-N package; installed when missing).
# The plain `cargo build --release` stays the default build; this one is faster on the request
# path (docs/benchmarks.md has the figures). Prints the optimised binary's path last.
#   deploy/build-pgo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

llvm=$(rustc -vV | awk '/^LLVM version/ {split($3, v, "."); print v[1]}')
profdata=llvm-profdata-$llvm
if ! command -v "$profdata" >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "llvm-$llvm" >/dev/null
fi
out=target/pgo

echo "== instrumented build (target/pgo/instrumented)" >&2
RUSTFLAGS="-Cprofile-generate=$PWD/$out/raw" \
  cargo build --release --quiet --bin tollgate --target-dir "$out/instrumented"
rm -rf "$out/raw"   # what the build scripts wrote; only the training's profiles count
bin=$out/instrumented/release/tollgate
source deploy/bench/lib.sh
bench_setup nginx wrk

# Training traffic, a few seconds of each: plain proxying, key-auth + rate-limiting with a good
# key, a missing key (401) and a spent limit (429), request bodies, unknown paths (404), 10,000
# routes, embedded analytics. Each gateway stops with SIGTERM so that it writes its profile.
dur=3
conns=32
train() { # FILE [wrk options]; env: TOLLGATE_ANALYTICS, path (default /api/x)
  local file=$1; shift
  start_tollgate "$file"
  run_wrk "http://127.0.0.1:$TG_PORT${path:-/api/x}" "$@" > /dev/null
  kill -TERM "$TG_PID"; wait "$TG_PID" || true
}
start_backend
one_route_file "$work/one.yaml"
plugins_file "$work/plugins.yaml"
sed 's/second: 1000000000,/second: 5,/' "$work/plugins.yaml" > "$work/limited.yaml"
ten_thousand_routes_file "$work/10k.yaml"
printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 4096)\nwrk.headers["Content-Type"] = "text/plain"\n' > "$work/post.lua"

train "$work/one.yaml"
train "$work/one.yaml" -s "$work/post.lua"
train "$work/plugins.yaml" -H "apikey: $bench_key"
train "$work/plugins.yaml"
train "$work/limited.yaml" -H "apikey: $bench_key"
train "$work/10k.yaml"
mkdir -p "$work/data"
TOLLGATE_ANALYTICS=embedded TOLLGATE_DATA_DIR="$work/data" train "$work/one.yaml"
path=/nowhere train "$work/one.yaml"

echo "== optimised build (target/pgo/release)" >&2
# Named after its content, so that cargo rebuilds whenever the profile changes.
merged=$out/tollgate.profdata
"$profdata" merge -o "$merged" "$out"/raw/*.profraw
named=$out/tollgate-$(sha256sum "$merged" | cut -c1-12).profdata
rm -f "$out"/tollgate-*.profdata
mv "$merged" "$named"
RUSTFLAGS="-Cprofile-use=$PWD/$named" cargo build --release --quiet --bin tollgate --target-dir "$out"
echo "$out/release/tollgate"

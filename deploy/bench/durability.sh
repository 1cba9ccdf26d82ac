#!/usr/bin/env bash
# The cost of TOLLGATE_ANALYTICS_DURABILITY=wal, in one run on this machine: the proxy's
# requests/s and its proxy thread's CPU per request with analytics off, embedded (`batch`, the
# default) and embedded with the write-ahead log (`wal`), against the same nginx backend, driven
# by wrk, in rounds that each start with the next mode (so that drift and order hit the three
# alike). Prints a Markdown table and, per mode, the mean against analytics off.
#   deploy/bench/durability.sh [duration_seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
rounds=${2:-3}
conns=32
source deploy/bench/lib.sh
bench_setup nginx wrk
start_backend
one_route_file "$work/one.yaml"

# CPU ticks (user + system) of process $1's proxy threads.
proxy_ticks() { awk '$2 ~ /^[(]tollgate-proxy/ {s += $14 + $15} END {print s + 0}' /proc/"$1"/task/*/stat; }

run() { # $1 = off|batch|wal; prints "requests/s p99 proxy-thread-µs-per-request"
  local analytics=embedded durability=$1
  [ "$1" = off ] && analytics=off durability=batch
  rm -rf "$work/data-$1"; mkdir -p "$work/data-$1"
  TOLLGATE_ANALYTICS=$analytics TOLLGATE_ANALYTICS_DURABILITY=$durability \
    TOLLGATE_DATA_DIR="$work/data-$1" start_tollgate "$work/one.yaml"
  local t0 t1 figures n
  t0=$(proxy_ticks "$TG_PID")
  figures=$(run_wrk "http://127.0.0.1:$TG_PORT/api/x")
  t1=$(proxy_ticks "$TG_PID")
  kill "$TG_PID"; wait "$TG_PID" 2>/dev/null || true
  n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
  read -r rps _ p99 <<< "$figures"
  echo "$rps $p99 $(python3 -c "print(f'{($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / $n:.2f}')")"
}

echo
echo "wrk -t1 -c$conns -d${dur}s, one proxy worker, $rounds rounds ($(date -u '+%F %H:%M') UTC, $(nproc) cores, $(git rev-parse --short HEAD))"
echo
echo "| round | analytics | requests/s | p99 | proxy thread CPU µs per request |"
echo "|---|---|---|---|---|"
modes=(off batch wal)
declare -A rps=() cpu=()
for round in $(seq "$rounds"); do
  for k in 0 1 2; do
    mode=${modes[(k + round - 1) % 3]}
    read -r r p99 us < <(run "$mode")
    echo "| $round | $mode | $r | $p99 | $us |"
    rps[$mode]+="$r,"; cpu[$mode]+="$us,"
  done
done
python3 - "${rps[off]}" "${rps[batch]}" "${rps[wal]}" "${cpu[off]}" "${cpu[batch]}" "${cpu[wal]}" <<'PY'
import statistics, sys
off, batch, wal, c_off, c_batch, c_wal = ([float(x) for x in a.split(",") if x] for a in sys.argv[1:])
mean = statistics.mean
for name, r, c in (("batch", batch, c_batch), ("wal", wal, c_wal)):
    print(f"\nembedded, {name}: requests/s {1 - mean(r) / mean(off):.1%} below analytics off"
          f" (rounds: {', '.join(f'{1 - a / o:.1%}' for a, o in zip(r, off))});"
          f" proxy thread {mean(c):.2f} µs per request against {mean(c_off):.2f} µs off")
print(f"wal against batch: requests/s {1 - mean(wal) / mean(batch):.1%} lower,"
      f" proxy thread {mean(c_wal) - mean(c_batch):+.2f} µs per request")
PY

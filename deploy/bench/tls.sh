#!/usr/bin/env bash
# TLS termination against nginx, in one run on this machine: the same trivial backend behind
# nginx (one worker, `listen ssl http2`, keepalive upstream) and behind Tollgate (one proxy
# worker, its TLS listener), both serving the same ECDSA P-256 certificate made here by
# openssl. Three measurements, each in ROUNDS rounds (default 3) that alternate the two:
#   - HTTPS keep-alive: wrk, HTTP/1.1 over 32 kept-alive TLS connections;
#   - new TLS handshakes: wrk with `Connection: close`, so that every request is a new TCP
#     connection and a full handshake (wrk resumes no sessions);
#   - HTTP/2 multiplexed: h2load, 8 connections with 16 streams each.
# Prints a Markdown table with Tollgate's ratio to nginx in the same rounds.
#   [ROUNDS=n] deploy/bench/tls.sh [duration_seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
rounds=${ROUNDS:-3}
conns=32
source deploy/bench/lib.sh
bench_setup nginx wrk openssl
command -v h2load >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nghttp2-client >/dev/null
start_backend

openssl req -x509 -nodes -days 30 -subj /CN=bench.test -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$work/bench.key" -out "$work/bench.crt" 2>/dev/null
read -r nginx_tls tollgate_tls < <(free_ports 2)
start_nginx tls "upstream backend { server 127.0.0.1:$backend; keepalive 64; }
  server { listen 127.0.0.1:$nginx_tls ssl http2;
    ssl_certificate $work/bench.crt; ssl_certificate_key $work/bench.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    # nginx closes a connection after 1,000 requests by default (HTTP/2 too), which h2load
    # does not survive and which would cost nginx a handshake per 1,000; Tollgate has no such limit.
    keepalive_requests 1000000;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
wait_port "$nginx_tls"

indent() { sed 's/^/      /'; }
one_route_file "$work/tls.yaml"
{
  echo "certificates:"
  echo "  - cert: |"; indent < "$work/bench.crt"
  echo "    key: |"; indent < "$work/bench.key"
  echo "    snis: [{ name: bench.test }, { name: \"*\" }]"
} >> "$work/tls.yaml"
TOLLGATE_PROXY_TLS_LISTEN=127.0.0.1:$tollgate_tls start_tollgate "$work/tls.yaml"
wait_port "$tollgate_tls"

# The subject each serves for bench.test must be the one made here.
for port in "$nginx_tls" "$tollgate_tls"; do
  subject=$(openssl s_client -connect "127.0.0.1:$port" -servername bench.test </dev/null 2>/dev/null | grep '^subject=')
  [ "$subject" = "subject=CN = bench.test" ] || { echo "port $port serves '$subject'" >&2; exit 1; }
done

# One measurement of KIND against PORT; prints "requests/s [p50 p99]".
measure() {
  local kind=$1 port=$2 seconds=$3 url="https://bench.test:$2/api/x"
  case $kind in
    keepalive|handshakes)
      local extra=(); [ "$kind" = handshakes ] && extra=(-H "Connection: close")
      # wrk cannot resolve bench.test: it asks for 127.0.0.1, which both answer with the same
      # certificate (nginx's only one; Tollgate's `*` SNI).
      dur=$seconds run_wrk "${extra[@]}" "https://127.0.0.1:$port/api/x"
      if grep -q "Non-2xx\|Socket errors" "$work/wrk.out"; then
        echo "$kind on $port: $(grep 'Non-2xx\|Socket errors' "$work/wrk.out")" >&2; exit 1
      fi ;;
    h2)
      # h2load sends no SNI for an IP address: the certificate is the same, as for wrk.
      h2load -c 8 -m 16 -D "$seconds" --warm-up-time=1 "https://127.0.0.1:$port/api/x" > "$work/h2load.out"
      grep -q " [1-9][0-9]* succeeded, 0 failed, 0 errored" "$work/h2load.out" || { cat "$work/h2load.out" >&2; exit 1; }
      awk '/^finished in/ {gsub(",", "", $4); print $4}' "$work/h2load.out" ;;
  esac
}

kinds=(keepalive handshakes h2)
names=("HTTPS keep-alive (wrk, HTTP/1.1)" "new TLS handshakes (wrk, Connection: close)" "HTTP/2 multiplexed (h2load -c8 -m16)")
for round in 0 $(seq "$rounds"); do
  seconds=$dur; [ "$round" = 0 ] && seconds=2
  for k in 0 1 2; do
    for who in nginx tollgate; do
      port=$nginx_tls; [ "$who" = tollgate ] && port=$tollgate_tls
      figures=$(measure "${kinds[$k]}" "$port" "$seconds")
      [ "$round" = 0 ] || echo "$round|$who: ${names[$k]}|$figures" >> "$work/rounds"
    done
  done
done

echo
echo "one nginx worker and one Tollgate worker, ${dur}s per measurement, $rounds rounds in one run ($(date -u +%F), $(nproc) cores)"
echo
for name in "${names[@]}"; do echo "nginx: $name|nginx: $name"; echo "tollgate: $name|nginx: $name"; done > "$work/order"
python3 deploy/bench/report.py "$work/rounds" "$work/order"

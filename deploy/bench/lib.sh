# Shared by the benchmark scripts: installs the Debian packages they need, builds the release
# binary (unless `bin` already names the one to run), and gives a temp dir whose processes (their
# PIDs in `pids`) stop on exit.
#   source deploy/bench/lib.sh; bench_setup PACKAGE...
bench_setup() {
  local missing=()
  for pkg in "$@"; do   # each package installs a command of its own name
    command -v "$pkg" >/dev/null || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if [ -z "${bin:-}" ]; then
    cargo build --release --quiet --bin tollgate
    bin=target/release/tollgate
  fi
  work=$(mktemp -d /tmp/tollgate-bench.XXXXXX)
  pids=()
  run_under=()   # a command the next nginx or Tollgate runs under (instructions.sh: callgrind)
  trap 'for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
}

free_port() { free_ports 1; }

# N distinct free ports on one line: all are held open while they are picked, so that the same
# port cannot come out twice.
free_ports() {
  python3 -c 'import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in held: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))' "$1"
}

wait_port() { for _ in $(seq 300); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# Starts Debian's ClickHouse server on loopback with deploy/clickhouse/config.xml and its data in
# the temp dir, and waits for it; sets `ch_url`.
start_clickhouse() {
  local http tcp
  read -r http tcp < <(free_ports 2)
  clickhouse-server --config-file=deploy/clickhouse/config.xml -- --http_port="$http" --tcp_port="$tcp" \
    --path="$work/ch/" --tmp_path="$work/ch/tmp/" --user_files_path="$work/ch/uf/" \
    --format_schema_path="$work/ch/fs/" > "$work/clickhouse.log" 2>&1 & pids+=($!)
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:$http/ping" >/dev/null 2>&1 && break; sleep 0.1; done
  ch_url="http://127.0.0.1:$http"
}

# Starts an nginx with one worker (as Tollgate gets one proxy thread) and the given http block.
#   start_nginx NAME HTTP_BLOCK_BODY [MAIN_CONTEXT_DIRECTIVES]
start_nginx() {
  cat > "$work/$1.conf" <<CONF
${3:-}
worker_processes 1;
daemon off;
pid $work/$1.pid;
error_log $work/$1-error.log;
events { worker_connections 4096; }
http { access_log off; $2 }
CONF
  "${run_under[@]}" nginx -c "$work/$1.conf" -p "$work" > "$work/$1.out" 2>&1 & pids+=($!)
}

# The trivial backend every benchmark proxies to: one nginx process answering `return 200` on
# every port given (a free one when none); sets `backend` to the first.
#   start_backend [PORT...]
start_backend() {
  local ports=("$@") listen="" port
  [ ${#ports[@]} -gt 0 ] || ports=("$(free_port)")
  for port in "${ports[@]}"; do listen+="listen 127.0.0.1:$port; "; done
  backend=${ports[0]}
  start_nginx backend "server { $listen location / { default_type application/json; return 200 '{\"ok\":true}'; } }"
  for port in "${ports[@]}"; do wait_port "$port"; done
}

# nginx as the reference reverse proxy to the backend (keepalive upstream); sets `nginx_proxy`.
#   start_nginx_proxy [MAIN_CONTEXT_DIRECTIVES]
start_nginx_proxy() {
  nginx_proxy=$(free_port)
  start_nginx proxy "upstream backend { server 127.0.0.1:$backend; keepalive 64; }
  server { listen 127.0.0.1:$nginx_proxy;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" "${1:-}"
  wait_port "$nginx_proxy"
}

# A declarative file with one service for the backend and one route, /api/.
one_route_file() {
  printf '_format_version: "3.0"\nservices:\n  - name: backend\n    url: http://127.0.0.1:%s\n    routes:\n      - name: api\n        paths: [/api/]\n' "$backend" > "$1"
}

# One service for the backend with 10,000 routes, /api/ the last of them.
ten_thousand_routes_file() {
  {
    printf '_format_version: "3.0"\nservices:\n  - name: backend\n    url: http://127.0.0.1:%s\n    routes:\n' "$backend"
    for i in $(seq 1 9999); do printf '      - paths: [/svc%s/]\n' "$i"; done
    printf '      - name: api\n        paths: [/api/]\n'
  } > "$1"
}

# The same with key-auth and rate-limiting on the route (limits no benchmark reaches) and one
# consumer whose key is `bench_key`.
bench_key=0123456789abcdef0123456789abcdef
plugins_file() {
  one_route_file "$1"
  cat >> "$1" <<YAML
        plugins:
          - name: key-auth
          - name: rate-limiting
            config: { second: 1000000000, hour: 1000000000000 }
consumers:
  - username: bench
    keyauth_credentials:
      - key: $bench_key
YAML
}

# Starts Tollgate on one proxy worker, DB-less with the given file, analytics off unless
# TOLLGATE_ANALYTICS says otherwise; sets TG_PORT, TG_STATUS and TG_PID once it is ready.
#   start_tollgate FILE
start_tollgate() {
  local proxy status
  read -r proxy status < <(free_ports 2)
  TOLLGATE_DATABASE=off TOLLGATE_DECLARATIVE_CONFIG="$1" TOLLGATE_WORKER_THREADS=1 TOLLGATE_ANALYTICS=${TOLLGATE_ANALYTICS:-off} \
  TOLLGATE_PROXY_LISTEN=127.0.0.1:$proxy TOLLGATE_PROXY_TLS_LISTEN=${TOLLGATE_PROXY_TLS_LISTEN:-off} TOLLGATE_ADMIN_LISTEN=off TOLLGATE_ADMIN_TLS_LISTEN=off TOLLGATE_STATUS_LISTEN=127.0.0.1:$status \
  TOLLGATE_CONSOLE_LISTEN=off TOLLGATE_PORTAL_LISTEN=off TOLLGATE_DATA_DIR=${TOLLGATE_DATA_DIR:-$work/data-$proxy} \
  RUST_LOG=warn "${run_under[@]}" "$bin" > "$work/tollgate-$proxy.log" 2>&1 &
  TG_PID=$!; pids+=($TG_PID)
  for _ in $(seq 600); do curl -fs "http://127.0.0.1:$status/status" >/dev/null 2>&1 && break; sleep 0.05; done
  TG_PORT=$proxy; TG_STATUS=$status
}

# One wrk run of `dur` seconds on `conns` connections; prints "requests/s p50 p99".
#   run_wrk URL [wrk options]
run_wrk() {
  wrk -t1 -c"$conns" -d"${dur}s" --latency "$@" > "$work/wrk.out"
  echo "$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out") $(awk '$1=="50%" {print $2}' "$work/wrk.out") $(awk '$1=="99%" {print $2}' "$work/wrk.out")"
}

# Measures each target in `rounds` rounds of `dur` seconds, after a round 0 that warms each up
# for a second and is not counted; each round starts one target later than the one before, so
# that no target always runs right after the same one. The targets are the arrays `labels` and
# `urls`, with `headers` (one request header each, or empty) when it is set. Appends
# "round|label|requests/s p50 p99" lines to $work/rounds; any non-2xx answer stops the run.
measure_rounds() {
  local n=${#labels[@]} round i j seconds figures args
  for round in 0 $(seq "$rounds"); do
    seconds=$dur; [ "$round" = 0 ] && seconds=1
    for i in $(seq 0 $((n - 1))); do
      j=$(( (i + round) % n ))
      args=("${urls[$j]}"); [ -n "${headers[$j]:-}" ] && args+=(-H "${headers[$j]}")
      figures=$(dur=$seconds run_wrk "${args[@]}")
      if grep -q "Non-2xx" "$work/wrk.out"; then
        echo "${labels[$j]}: $(grep Non-2xx "$work/wrk.out")" >&2; exit 1
      fi
      [ "$round" = 0 ] || echo "$round|${labels[$j]}|$figures" >> "$work/rounds"
    done
  done
}

# Prints the Markdown table of measure_rounds' rounds, each row against the first label's.
report_against_first() {
  echo
  echo "wrk -t1 -c$conns -d${dur}s on one Tollgate worker, $rounds rounds in one run ($(date -u +%F), $(nproc) cores)"
  echo
  for label in "${labels[@]}"; do echo "$label|${labels[0]}"; done > "$work/order"
  python3 deploy/bench/report.py "$work/rounds" "$work/order"
}

# User-space instructions per request of the process `last_pid` (started under callgrind, see
# under_callgrind), counted after 2 s of warm-up over `dur` seconds of wrk -c`conns`; prints a
# Markdown row and stops the process unless KEEP is set.
#   count LABEL URL [wrk options]
count() {
  local label=$1 url=$2; shift 2
  wait_port "$(echo "$url" | sed -E 's|.*:([0-9]+)/.*|\1|')"
  wrk -t1 -c"$conns" -d2s "$@" "$url" > /dev/null
  callgrind_control -z "$last_pid" > /dev/null 2>&1
  wrk -t1 -c"$conns" -d"${dur}s" "$@" "$url" > "$work/$label.wrk"
  callgrind_control -d "$last_pid" > /dev/null 2>&1
  sleep 1
  local n ir
  n=$(awk '/requests in/ {print $1}' "$work/$label.wrk")
  ir=$(awk '/^summary:/ {print $2}' "$work/$cg_name.cg".* | tail -1)
  rm -f "$work/$cg_name.cg".*
  if [ -z "${KEEP:-}" ]; then kill "$last_pid"; wait "$last_pid" 2>/dev/null || true; fi
  echo "| $label | $n | $((ir / n)) |"
}
# The next nginx or Tollgate runs under callgrind, its counts in $work/NAME.cg.*
under_callgrind() { cg_name=$1; run_under=(valgrind --tool=callgrind "--callgrind-out-file=$work/$1.cg"); }

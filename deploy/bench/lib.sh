# Shared by the benchmark scripts: installs the Debian packages they need, builds the release
# binary, and gives a temp dir whose processes (their PIDs in `pids`) stop on exit.
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
  cargo build --release --quiet --bin tollgate
  bin=target/release/tollgate
  work=$(mktemp -d /tmp/tollgate-bench.XXXXXX)
  pids=()
  trap 'for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

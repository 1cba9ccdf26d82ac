#!/usr/bin/env bash
# What authentication and access control cost: one Tollgate process (one proxy worker) with a
# route per plugin set on the same trivial backend, driven in alternating rounds by wrk, each
# row compared with key-auth in the same rounds. jwt tokens are signed by PyJWT
# (tests/data/jwt_tokens.py, fresh keys each run): HS256, and RS256 (RSA 2048, one public-key
# verification per request, which is its cost). basic-auth checks its argon2id hash once per
# client and then remembers the verified password, so the steady state is what is measured.
#   [ROUNDS=n] deploy/bench/auth.sh [duration_seconds]
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-10}
rounds=${ROUNDS:-3}
conns=32
source deploy/bench/lib.sh
bench_setup nginx wrk
start_backend

pylib=$PWD/target/test-python
PYTHONPATH=$pylib python3 -c 'import jwt, cryptography' 2>/dev/null ||
  python3 -m pip install -q --target "$pylib" pyjwt cryptography
secret=bench-secret-of-sixty-four-bytes-for-hs256-and-whatever-else-0123
PYTHONPATH=$pylib python3 tests/data/jwt_tokens.py "$secret" "$(date +%s)" 2>/dev/null > "$work/jwt.json"
field() { python3 -c "import json,sys; d=json.load(open('$work/jwt.json')); print($1)"; }
hs256=$(field 'd["tokens"]["HS256"]')
rs256=$(field 'd["tokens"]["RS256"]')
field 'd["keys"]["rsa"]' | sed 's/^/          /' > "$work/rsa.pem"
basic=$(printf 'bench:bench-password' | base64)

cat > "$work/auth.yaml" <<YAML
_format_version: "3.0"
services:
  - name: backend
    url: http://127.0.0.1:$backend
    routes:
      - { name: key, paths: [/key/], plugins: [{ name: key-auth }] }
      - { name: jwt, paths: [/jwt/], plugins: [{ name: jwt }] }
      - { name: basic, paths: [/basic/], plugins: [{ name: basic-auth }] }
      - name: acl
        paths: [/acl/]
        plugins:
          - { name: key-auth }
          - { name: acl, config: { allow: [bench] } }
          - { name: ip-restriction, config: { allow: [127.0.0.0/8] } }
consumers:
  - username: bench
    keyauth_credentials: [{ key: $bench_key }]
    basicauth_credentials: [{ username: bench, password: bench-password }]
    acls: [{ group: bench }]
    jwt_secrets:
      - { key: key-HS256, algorithm: HS256, secret: $secret }
      - key: key-RS256
        algorithm: RS256
        rsa_public_key: |
$(cat "$work/rsa.pem")
YAML
start_tollgate "$work/auth.yaml"

labels=("key-auth" "jwt HS256" "jwt RS256" "basic-auth" "key-auth + acl + ip-restriction")
paths=(key jwt jwt basic acl)
headers=("apikey: $bench_key" "Authorization: Bearer $hs256" "Authorization: Bearer $rs256"
  "Authorization: Basic $basic" "apikey: $bench_key")
n=${#paths[@]}
for i in $(seq 0 $((n - 1))); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "${headers[$i]}" "http://127.0.0.1:$TG_PORT/${paths[$i]}/x")
  [ "$code" = 200 ] || { echo "${labels[$i]} answered $code" >&2; cat "$work"/tollgate-*.log >&2; exit 1; }
done
urls=(); for p in "${paths[@]}"; do urls+=("http://127.0.0.1:$TG_PORT/$p/x"); done
measure_rounds
report_against_first

#!/usr/bin/env bash
# Property-based fuzzing of the REST API (issue 20): schemathesis (PyPI)
# reads the gateway's own OpenAPI description (GET /api/openapi.json) and
# sends generated requests, valid and invalid, to a real stack (a gateway
# and a worker started by `testkit stack`, dev mode, SQLite). Fails on any
# 5xx reply other than a documented 503 (`not_a_server_error`, 503 allowed
# only where the description lists it) and on any error reply that is not
# `{"error":{"code","message"}}` with the status its code names
# (scripts/api_fuzz_checks.py). Bounded: a few examples per operation, no
# stateful phase; about a minute.
#   scripts/api-fuzz.sh [target/debug]        (API_FUZZ_EXAMPLES=N to change the bound)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
root=$PWD
bins=$(realpath "${1:-target/debug}")
examples=${API_FUZZ_EXAMPLES:-25}
st_bin=$(pip_tool schemathesis schemathesis==4.32.5)

tmp=$(mktemp -d)
"$bins/testkit" stack --dev --test-defaults --ignore-stdin --bin-dir "$bins" --gateways 1 --workers 1 > "$tmp/stack.json" 2> "$tmp/stack.log" &
stack=$!
trap 'kill $stack 2>/dev/null; wait $stack 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 600); do [ -s "$tmp/stack.json" ] && break; kill -0 $stack 2>/dev/null || break; sleep 0.1; done
[ -s "$tmp/stack.json" ] || { echo "api-fuzz: the stack did not start"; cat "$tmp/stack.log"; exit 1; }
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gateways"][0]["url"])' "$tmp/stack.json")
log=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["gateways"][0]["log"])' "$tmp/stack.json")

token() { curl -sf -X POST "$url$1" -H 'content-type: application/json' -d "$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }
agent=$(token /api/login '{"username":"demo","password":"demo"}')
# The description's example id (`alice`) exists, with points and a message,
# so that generated requests also reach the handlers past "not found".
customer=$(token /api/dev/customer-token '{"username":"alice"}')
curl -sf -X POST "$url/api/customers/alice/points" -H "Authorization: Bearer $agent" -H "Idempotency-Key: seed-1" \
  -H 'content-type: application/json' -d '{"amount":5}' > /dev/null

run() {
  # $1: what, then schemathesis options.
  local what=$1; shift
  echo "-- $what"
  # From $tmp: schemathesis keeps its cache (.schemathesis/) in the working directory.
  if ! (cd "$tmp" && PYTHONPATH="$root/scripts" SCHEMATHESIS_HOOKS=api_fuzz_checks "$st_bin/schemathesis" run "$url/api/openapi.json" \
      --checks not_a_server_error,error_is_a_json_error --max-examples "$examples" --phases examples,coverage,fuzzing \
      --workers 1 --seed 20 --no-color --suppress-health-check all --request-timeout 10 "$@" > "$tmp/out" 2>&1); then
    cat "$tmp/out"
    echo "api-fuzz: $what failed; gateway log: $log"
    tail -n 40 "$log"
    exit 1
  fi
  sed -n '/SUMMARY/,$p' "$tmp/out" | grep -E "Tested|generated|Seed|Failures|passed" || true
}
# Agents see every route (logout last: it ends the session).
run "as an agent" -H "Authorization: Bearer $agent" --exclude-path /api/logout --exclude-path /api/orders/events
run "as a customer" -H "Authorization: Bearer $customer" --include-method GET --exclude-path /ws
run "as the order system" -H "Authorization: Bearer dev-service-token" --include-path /api/orders/events
run "without credentials" --exclude-path /api/orders/events
run "logout" -H "Authorization: Bearer $agent" --include-path /api/logout
echo "api-fuzz: passed"

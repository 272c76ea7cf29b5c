#!/usr/bin/env bash
# WebSocket conformance: the Autobahn test cases 1-10 (run by `kosoku`, from
# PyPI) against the gateway's own socket stack, through the echo route that
# only CHAT_TEST_ECHO=1 enables. Passes when every case's behaviour is OK,
# NON-STRICT or INFORMATIONAL.
#   scripts/autobahn.sh [path/to/gateway]
set -euo pipefail
cd "$(dirname "$0")/.."
gw=${1:-target/debug/gateway}
venv=.venv-test
if [ ! -x "$venv/bin/kosoku" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kosoku==0.1.0
fi
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
CHAT_TEST_ECHO=1 CHAT_DEV=1 CHAT_DEMO_DATA=0 CHAT_KEY_PREFIX="autobahn-$$:" GATEWAY_ADDR=127.0.0.1:0 CHAT_METRICS_ADDR=127.0.0.1:0 \
  DATABASE_URL="sqlite://$tmp/chat.db" "$gw" > "$tmp/out" 2> "$tmp/log" &
pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$tmp/out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on http:\/\///p' "$tmp/out" | head -n1)
[ -n "$addr" ] || { echo "autobahn: gateway did not start"; cat "$tmp/log"; exit 1; }
cases=(-i '1.*' -i '2.*' -i '3.*' -i '4.*' -i '5.*' -i '6.*' -i '7.*' -i '9.*' -i '10.*')
# kosoku exits non-zero when the fuzzer itself drops a connection on purpose
# (behaviorClose "FAILED BY CLIENT"); the verdict below reads `behavior`.
"$venv/bin/kosoku" "${cases[@]}" -p 2 -o "$tmp/report" "ws://$addr/ws-echo" > "$tmp/kosoku.out" 2>&1 || true
python3 - "$tmp/report" <<'PY'
import glob, json, sys, collections
counts, bad = collections.Counter(), []
for f in glob.glob(sys.argv[1] + "/*.json"):
    d = json.load(open(f))
    if not isinstance(d, dict) or "behavior" not in d:
        continue
    counts[d["behavior"]] += 1
    if d["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL"):
        bad.append(f"{d.get('id')}: {d['behavior']} {d.get('behaviorClose')} {d.get('result', '')}")
total = sum(counts.values())
print("autobahn cases 1-10:", dict(counts))
for b in bad:
    print("  FAILED", b)
print(f"autobahn: {total - len(bad)} passed, {len(bad)} failed")
sys.exit(1 if bad or total < 250 else 0)
PY

#!/usr/bin/env bash
# Where the send script's time goes inside Redis: the gateway's SEND script
# (gateway/src/relay.rs, as the gateway loads it: not publishing in script)
# run by redis-benchmark on one conversation, then cut after each group of
# redis.call()s ("ladder"), then EVALSHA of `return 1` with the same
# arguments (the call's fixed cost). Prints microseconds per call from
# INFO commandstats (Redis' own time, not the client's round trip), ROUNDS
# times alternated (the machine is noisy: read the medians).
#
#   scripts/bench-send-script.sh            # 30,000 calls per figure, 3 rounds
#   N=100000 ROUNDS=5 scripts/bench-send-script.sh
#
# Uses keys under `sendbench:` on REDIS_URL (default redis://127.0.0.1:6379)
# and deletes them. Runs CONFIG RESETSTAT: do not run it beside another benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
N=${N:-30000}
ROUNDS=${ROUNDS:-3}
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
R() { redis-cli -u "$REDIS_URL" "$@"; }

# The script source and its ladder, from the Rust sources.
python3 - "$DIR" <<'EOF'
import re, sys
out = sys.argv[1]
L = 'gateway/src/broker/lua/'
lua = lambda n: open(L + n + '.lua').read()
# The preludes as broker/scripts.rs joins them (each followed by a newline).
prelude = ''.join(lua(n) + '\n' for n in ('subst', 'hot', 'meta'))
send = lua('send')
open(f'{out}/full.lua', 'w').write(prelude + send)
lines = send.strip('\n').split('\n')
cuts = [("1 checks+INCR", "redis.call('INCR'"), ("2 +frame+replay XADD", "redis.call('XADD', KEYS[3]"),
        ("3 +dedupe SET, meta HSET/HDEL", "redis.call('HDEL'"), ("4 +2 EXPIRE", "hot(ARGV[7]"),
        ("5 +SMEMBERS, HMGET", "local prof")]
for i, (name, marker) in enumerate(cuts, 1):
    body = []
    for l in lines:
        body.append(l)
        if marker in l:
            break
    else:
        sys.exit(f"marker not found: {marker}")
    open(f'{out}/ladder{i}.lua', 'w').write(prelude + '\n'.join(body) + "\nreturn {'OK'}\n")
    open(f'{out}/ladder{i}.name', 'w').write(name)
open(f'{out}/ret1.lua', 'w').write('return 1')
EOF

C='sendbench:{c:c1}'
FRAME='{"type":"message","conversation":"c1","pos":0,"message":{"seq":0,"kind":"customer","author":{"kind":"customer","id":"c1","username":"c1"},"text":"lt|81|0|13886|lorem ipsum dolor sit amet consectetur","ts":1796587842351,"deleted":false,"reactions":{},"client_id":"d5262e96-b180-4d85-bf70-830f9f96ca3c"}}'
one() { # lua file -> usec per EVALSHA
  local sha
  sha=$(R script load "$(cat "$1")")
  R del "$C:seq" "$C:replay" "$C:meta" > /dev/null
  R set "$C:seq" 0 > /dev/null
  R hset "$C:cust" username c1 avatar_url '' > /dev/null
  R sadd "$C:nodes" g0 > /dev/null
  R hset "$C:watchers" g1 1 > /dev/null
  R config resetstat > /dev/null
  redis-benchmark -u "$REDIS_URL" -q -n "$N" -c 4 -r 1000000000 EVALSHA "$sha" 7 \
    "$C:seq" "$C:dd:__rand_int__" "$C:replay" "$C:meta" "$C:nodes" "$C:cust" "$C:watchers" \
    1796587842351 customer "lt|81|0|13886|lorem ipsum dolor sit amet consectetur" "$FRAME" 86400 1000 86400 > /dev/null
  R info commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p'
  R --scan --pattern 'sendbench:*' | xargs -r -n 1000 redis-cli -u "$REDIS_URL" unlink > /dev/null
}
FIGS="ret1 ladder1 ladder2 ladder3 ladder4 ladder5 full"
declare -A res
for r in $(seq 1 "$ROUNDS"); do
  for f in $FIGS; do res[$f]="${res[$f]:-}$(printf '%10s' "$(one "$DIR/$f.lua")")"; done
done
printf '%-34s' "figure (us per call)"; for r in $(seq 1 "$ROUNDS"); do printf '%10s' "run $r"; done; echo
for f in $FIGS; do
  case $f in ret1) name="EVALSHA 'return 1', same args";; full) name="full SEND";; *) name=$(cat "$DIR/$f.name");; esac
  printf '%-34s%s\n' "$name" "${res[$f]}"
done

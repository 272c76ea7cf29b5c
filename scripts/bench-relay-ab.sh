#!/usr/bin/env bash
# A/B of two builds on the relay mix (issue 17): 100 customers on gateway 0,
# 2 watching agents on gateway 1, 130-byte messages only, at fixed rates,
# alternated build by build in each round. Prints per run: CPU s per 1,000
# messages of each process, Redis commands and usec per message (INFO
# commandstats over the window), p50/p99; reports in artifacts/bench/relay-ab-<time>/.
#
#   OLD=/tmp/old-build NEW=target/release RATES="1000 3000" ROUNDS=2 scripts/bench-relay-ab.sh
# OLD_ENV / NEW_ENV: settings for one side only ("--env WORKER_LINGER_MS=100"),
# to A/B a setting with one build (OLD=NEW).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
OUT=artifacts/bench/relay-ab-$(date +%H%M%S); mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | tr -d '\r' | sed -n 's/^process_id://p')
. scripts/bench-stack.sh
LT=${LT:-${NEW:-target/release}/loadtest}
LOAD=${LOAD:-"--mix relay --customers 100 --agents 2 --warmup-secs 1 --drain-secs 5"}
for round in $(seq 1 "${ROUNDS:-1}"); do
  for r in ${RATES:-1000 3000}; do
    for who in old new; do
      if [ "$who" = old ]; then BIN_DIR=${OLD:?OLD=build dir}; STACK_ENV=${OLD_ENV:-}; else BIN_DIR=${NEW:-target/release}; STACK_ENV=${NEW_ENV:-}; fi
      export BIN_DIR STACK_ENV
      start_ours 2
      $LT run $OURS_ARGS $ADDRS $LOAD --rate 500 --duration-secs 3 > /dev/null 2>&1 || true
      $LT run $OURS_ARGS $ADDRS $PIDARGS $LOAD --rate "$r" --duration-secs "${DUR:-12}" --json "$OUT/$who-$r-$round.json" > /dev/null 2>&1 || true
      stop_all
      python3 - "$OUT/$who-$r-$round.json" "$who" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = {k: v["cpu_seconds_per_1k_msgs"] for k, v in sorted(d["processes"].items())}
cells = " ".join(f"{k} {v:.3f}" for k, v in p.items())
cmds = d.get("redis_commands") or {}
calls = sum(v.get("calls_per_msg", 0) for k, v in cmds.items() if k not in ("evalsha", "eval"))
scripts = sum(v.get("calls_per_msg", 0) for k, v in cmds.items() if k in ("evalsha", "eval"))
top = sorted(cmds.items(), key=lambda kv: -kv[1].get("calls_per_msg", 0))[:8]
tops = ", ".join(f"{k} {v.get('calls_per_msg', 0):.2f}" for k, v in top)
lat = d["latency"]
print(f"{sys.argv[2]}: {d['offered_msgs_per_s']:.0f} msg/s | CPU s/1k: {cells} | sum {sum(p.values()):.3f} | "
      f"rows/s to agents {d.get('rows_per_s', 0):.0f} | redis cmds/msg {calls + scripts:.2f} (scripts {scripts:.2f}) [{tops}] | p50 {lat['p50_ms']:.1f} p99 {lat['p99_ms']:.1f} ms | {d['verdict']}")
PY
    done
  done
done
echo "$OUT"

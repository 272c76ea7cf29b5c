#!/usr/bin/env bash
# A/B of agent subscriptions (session 7): the build before them (every agent
# socket got every event of every conversation) against this one (agents
# watch 10 conversations each; rows for all), each with its own load
# generator, alternated: ROUNDS x (fixed RATE for SECS, then a quick ramp),
# on NODES gateways (default 2) + 1 worker.
#   OLD=/tmp/old-target/release scripts/bench-watch-ab.sh
# OLD: release binaries (gateway, worker, loadtest) built from c9cff11.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
REDIS_URL=redis://127.0.0.1:6379
OUT=artifacts/bench/watch-ab-$(date +%H%M%S); mkdir -p $OUT
ulimit -n "$(ulimit -Hn)"
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | tr -d '\r' | sed -n 's/^process_id://p')
. scripts/bench-stack.sh
OLD=${OLD:?set OLD to the directory of the old release build}
LOAD="--customers 2000 --agents 2 --warmup-secs 1 --drain-secs 5"
for round in $(seq 1 ${ROUNDS:-2}); do
  for who in old new; do
    if [ $who = old ]; then BIN_DIR=$OLD; else BIN_DIR=target/release; fi
    LT=$BIN_DIR/loadtest
    start_ours ${NODES:-2}
    $LT run $OURS_ARGS $ADDRS $LOAD --rate 500 --duration-secs 5 > /dev/null 2>&1 || true
    echo "== round $round $who: ${RATE:-3000} msg/s"
    $LT run $OURS_ARGS $ADDRS $PIDARGS $LOAD --rate ${RATE:-3000} --duration-secs ${SECS:-12} --json $OUT/$who-$round-fixed.json 2>&1 | grep -E "offered" | cut -c1-220
    python3 - "$OUT/$who-$round-fixed.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("   cpu s/1k msgs:", {k: round(v["cpu_seconds_per_1k_msgs"], 3) for k, v in r["processes"].items()},
      "total", round(sum(v["cpu_seconds_per_1k_msgs"] for v in r["processes"].values()), 3))
PY
    echo "== round $round $who: ramp"
    $LT ramp $OURS_ARGS $ADDRS $PIDARGS $LOAD --duration-secs ${STEP:-6} --start ${START:-2980} --factor 1.25 --max 200000 --json $OUT/$who-$round-ramp.json 2>&1 | grep -E "offered|max" | cut -c1-220
    stop_all
  done
done
echo $OUT

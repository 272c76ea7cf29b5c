#!/usr/bin/env bash
# One quick ramp each of ours (2 gateways + worker) and the Socket.IO peer
# (2 nodes), same generator: START (default 2384) x1.25 per STEP (6) s.
# The full, repeated comparison is scripts/bench-compare.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
REDIS_URL=redis://127.0.0.1:6379
OUT=artifacts/bench/quick-ramp-$(date +%H%M%S); mkdir -p $OUT
ulimit -n "$(ulimit -Hn)"
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | tr -d '\r' | sed -n 's/^process_id://p')
. scripts/bench-stack.sh
LT=${LT:-target/release/loadtest}
LOAD="--customers 2000 --agents 2 --warmup-secs 1 --drain-secs 5"
START=${START:-2384}
for who in ${WHO:-ours peer}; do
  if [ $who = ours ]; then start_ours 2; else start_peer 2; fi
  $LT run $OURS_ARGS $ADDRS $LOAD --rate 500 --duration-secs 5 > /dev/null 2>&1 || true
  $LT ramp $OURS_ARGS $ADDRS $PIDARGS $LOAD --duration-secs ${STEP:-6} --start $START --factor 1.25 --max 200000 --json $OUT/$who-ramp.json 2>&1 | grep -E "offered|max" | cut -c1-200
  stop_all
done
echo $OUT

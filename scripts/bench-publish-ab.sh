#!/usr/bin/env bash
# A/B of CHAT_PUBLISH_IN_SCRIPT (0 = two round trips, 1 = the send script
# publishes): 2 gateways + worker, 3,000 msg/s for 10 s, two alternated rounds.
# Needs release builds (cargo build --release -p gateway -p worker -p loadtest).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
REDIS_URL=redis://127.0.0.1:6379
OUT=artifacts/bench/publish-ab-$(date -u +%Y%m%d-%H%M%S); mkdir -p $OUT
ulimit -n "$(ulimit -Hn)"
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | tr -d '\r' | sed -n 's/^process_id://p')
. scripts/bench-stack.sh
LT=target/release/loadtest
LOAD="--customers 2000 --agents 2 --warmup-secs 1 --drain-secs 5"
for round in 1 2; do for mode in 0 1; do
  export CHAT_PUBLISH_IN_SCRIPT=$mode
  start_ours 2
  $LT run $OURS_ARGS $ADDRS $LOAD --rate 500 --duration-secs 4 > /dev/null 2>&1 || true
  $LT run $OURS_ARGS $ADDRS $PIDARGS $LOAD --rate 3000 --duration-secs 10 --json $OUT/m$mode-r$round.json 2>&1 | tail -1 | cut -c1-150
  stop_all
  python3 -c "
import json; r=json.load(open('$OUT/m$mode-r$round.json')); p=r['processes']
g=sum(v['cpu_seconds_per_1k_msgs'] for k,v in p.items() if k.startswith('gateway'))
print('mode=$mode round=$round gateways %.3f redis %.3f worker %.3f all %.3f' % (g, p['redis']['cpu_seconds_per_1k_msgs'], p['worker']['cpu_seconds_per_1k_msgs'], sum(v['cpu_seconds_per_1k_msgs'] for v in p.values())))"
done; done

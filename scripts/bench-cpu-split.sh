#!/usr/bin/env bash
# Where the machine's CPU goes at fixed rates: for each rate in RATES a fresh
# stack of ours (NODES gateways + worker, SQLite) or of the Socket.IO peer
# (NODES Node processes; WHO="ours peer" alternates them), a 3 s warm-up at 500
# msg/s, then one `loadtest run` (2,000 customers, 2 agents, DUR seconds)
# with CPU seconds per 1,000 messages of every gateway (or peer node), the
# worker and Redis (from /proc, `--pid`), and the load generator's own CPU
# (/usr/bin/time).
#
#   scripts/bench-cpu-split.sh                     # RATES="1000 4000" NODES=2 DUR=12
#   RATES=4000 ROUNDS=3 scripts/bench-cpu-split.sh
#   WHO="ours peer" RATES=4000 ROUNDS=3 scripts/bench-cpu-split.sh  # side by side
#   BIN_DIR=/tmp/other-build scripts/bench-cpu-split.sh   # another build's binaries
#
# Reports go to artifacts/bench/cpu-split-<time>/<who>-<rate>-<round>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
OUT=artifacts/bench/cpu-split-$(date +%H%M%S); mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)"
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | tr -d '\r' | sed -n 's/^process_id://p')
. scripts/bench-stack.sh
LT=${LT:-target/release/loadtest}
LOAD="--customers 2000 --agents 2 --warmup-secs 1 --drain-secs 5"
for round in $(seq 1 "${ROUNDS:-1}"); do
  for r in ${RATES:-1000 4000}; do
    for who in ${WHO:-ours}; do
      if [ "$who" = peer ]; then
        [ -d loadtest/peers/socketio/node_modules ] || (cd loadtest/peers/socketio && npm ci --no-audit --no-fund --silent)
        start_peer "${NODES:-2}"
      else
        start_ours "${NODES:-2}"
      fi
      $LT run $OURS_ARGS $ADDRS $LOAD --rate 500 --duration-secs 3 > /dev/null 2>&1 || true
      /usr/bin/time -f "%U %S" -o "$OUT/$who-$r-$round.time" \
        $LT run $OURS_ARGS $ADDRS $PIDARGS $LOAD --rate "$r" --duration-secs "${DUR:-12}" --json "$OUT/$who-$r-$round.json" > /dev/null 2>&1
      stop_all
      python3 - "$OUT/$who-$r-$round.json" "$OUT/$who-$r-$round.time" "$who" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
u, s = map(float, open(sys.argv[2]).read().split()[-2:])
n = d["deliveries"]["acked"] / 1000
p = {k: v["cpu_seconds_per_1k_msgs"] for k, v in sorted(d["processes"].items())}
cells = " ".join(f"{k} {v:.3f}" for k, v in p.items())
print(f"{sys.argv[3]}: {d['offered_msgs_per_s']:.0f} msg/s, CPU s per 1,000 msgs: {cells} | sum {sum(p.values()):.3f} "
      f"| generator {(u + s) / n:.3f} (whole run) | p99 {d['latency']['p99_ms']:.1f} ms | {d['verdict']}")
EOF
    done
  done
done
echo "$OUT"

#!/usr/bin/env bash
# Side-by-side benchmark: our gateway (2 nodes + 1 worker) against the
# Socket.IO peer (2 nodes, Redis streams adapter), same Redis, same load
# generator, same scenario, one session on this machine, in two mixes
# (docs/loadtest.md): `mixed` (2,000 customers, 2 agents watching 10 each,
# 25/60/15 messages/typing/seen, agent replies) and `relay` (messages only:
# 100 customers on node A, 2 agent sockets on node B each watching all 100
# conversations, 130-byte messages). Also the machine's
# ceilings (redis-benchmark XADD, a bare fastwebsockets echo) and the core
# relay figures (1 gateway: max msg/s, p50/p99 at 5,000 msg/s, chat-list page
# of 50 out of 100,000). Writes the table into BENCHMARKS.md (between the
# bench-compare markers) and every raw report under artifacts/bench/<time>/.
#
#   scripts/bench-compare.sh            # full run (~55 min on 2 cores)
#   RUNS=1 STEP_SECS=5 scripts/bench-compare.sh   # quicker, noisier
#   MIXES=relay scripts/bench-compare.sh          # one mix only
#
# Settings: RUNS (repetitions, medians are quoted; default 3), STEP_SECS
# (seconds per ramp step, default 8), COMMON_RATE (fixed rate for the p99
# comparison, default 1000), HIGH_RATE (a second fixed rate near this
# machine's saturation, where per-message CPU is no longer dominated by
# per-wake-up costs, default 3000), IDLE_CONNS (idle sockets asked of one node, in
# steps of IDLE_STEP; defaults 24000 and 2000: the ramp ends where the node
# refuses sockets, at this machine's 20,000 open files per process),
# CUSTOMERS (default 2000), AGENTS (default 2), REFINE (ramp steps between
# the last sustained and the first failed rate, default 2: within x1.06);
# MIXES (default "mixed relay"), and for the relay mix RELAY_CUSTOMERS
# (default 100), RELAY_AGENTS (default 2), RELAY_WATCH (conversations per
# agent socket, default every customer's up to 100), RELAY_BYTES (message
# text bytes, default 130). Both mixes use the same RUNS, STEP_SECS,
# COMMON_RATE and HIGH_RATE. Every fixed run of ours also reports Redis
# `INFO commandstats` per message (read before and after its window).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

RUNS=${RUNS:-3}
STEP_SECS=${STEP_SECS:-8}
COMMON_RATE=${COMMON_RATE:-1000}
HIGH_RATE=${HIGH_RATE:-3000}
IDLE_CONNS=${IDLE_CONNS:-24000}
IDLE_STEP=${IDLE_STEP:-2000}
CUSTOMERS=${CUSTOMERS:-2000}
MAX_RATE=${MAX_RATE:-200000}
REFINE=${REFINE:-2}
CHAT_ROWS=${CHAT_ROWS:-100000}
AGENTS=${AGENTS:-2}
MIXES=${MIXES:-mixed relay}
RELAY_CUSTOMERS=${RELAY_CUSTOMERS:-100}
RELAY_AGENTS=${RELAY_AGENTS:-2}
RELAY_WATCH=${RELAY_WATCH:-}
RELAY_BYTES=${RELAY_BYTES:-130}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
OUT=artifacts/bench/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ensure_toolchain
ensure_redis 6379 "${TMPDIR:-/tmp}/chat-bench-redis"
echo "== build (release)"
cargo build --release -q -p gateway -p worker -p loadtest
if [ ! -d loadtest/peers/socketio/node_modules ]; then
  (cd loadtest/peers/socketio && npm ci --no-audit --no-fund --silent)
fi
LT=target/release/loadtest
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | tr -d '\r' | sed -n 's/^process_id://p')

. scripts/bench-stack.sh

LOAD="--mix mixed --customers $CUSTOMERS --agents $AGENTS --warmup-secs 1 --drain-secs 5"
RELAY_LOAD="--mix relay --customers $RELAY_CUSTOMERS --agents $RELAY_AGENTS --message-bytes $RELAY_BYTES --warmup-secs 1 --drain-secs 5"
[ -n "$RELAY_WATCH" ] && RELAY_LOAD="$RELAY_LOAD --agent-watch $RELAY_WATCH"
# A discarded run after each start: JIT (node), caches and connection pools
# warm up before anything is measured (a cold peer failed its first step once).
warm() { $LT run $OURS_ARGS $ADDRS ${1:-$LOAD} --rate 500 --duration-secs 5 > /dev/null 2>&1 || true; }

echo "== ceilings"
redis-cli -u "$REDIS_URL" del benchxadd > /dev/null
redis-benchmark -q -n 300000 -c 50 XADD benchxadd MAXLEN '~' 100000 '*' e 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
  | tr '\r' '\n' | grep -i xadd | tail -n1 | tee "$OUT/xadd.txt"
redis-benchmark -q -n 1000000 -c 50 -P 16 XADD benchxadd MAXLEN '~' 100000 '*' e 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
  | tr '\r' '\n' | grep -i xadd | tail -n1 | tee "$OUT/xadd-p16.txt"
redis-cli -u "$REDIS_URL" del benchxadd > /dev/null
target/release/ws-echo > "$OUT/echo.out" &
pids+=($!)
ECHO=$(wait_line "$OUT/echo.out" "listening on ws://")
$LT echo --addr "$ECHO" --conns 50 --inflight 16 --secs 10 --json "$OUT/echo.json"
cleanup_procs

# Reports: <who>-ramp-N.json, <who>-fixed-N.json (COMMON_RATE), <who>-high-N.json
# (HIGH_RATE) for the mixed mix (the names of earlier sessions), and
# <who>-relay-ramp-N.json ... for the relay mix. Each stack fresh per mix and run.
for run in $(seq 1 "$RUNS"); do
  for mix in $MIXES; do
    case $mix in
      mixed) load=$LOAD; tag="" ;;
      relay) load=$RELAY_LOAD; tag="relay-" ;;
      *) echo "unknown mix $mix (MIXES: mixed, relay)" >&2; exit 2 ;;
    esac
    for who in ours peer; do
      if [ "$who" = ours ]; then
        echo "== run $run/$RUNS, $mix mix: ours, 2 gateways + worker"
        start_ours 2
      else
        echo "== run $run/$RUNS, $mix mix: socket.io peer, 2 nodes"
        start_peer 2
      fi
      warm "$load"
      $LT ramp $OURS_ARGS $ADDRS $PIDARGS $load --duration-secs "$STEP_SECS" --start 500 --factor 1.25 --refine "$REFINE" --max "$MAX_RATE" --json "$OUT/$who-${tag}ramp-$run.json"
      $LT run $OURS_ARGS $ADDRS $PIDARGS $load --rate "$COMMON_RATE" --duration-secs 15 --json "$OUT/$who-${tag}fixed-$run.json"
      $LT run $OURS_ARGS $ADDRS $PIDARGS $load --rate "$HIGH_RATE" --duration-secs 15 --json "$OUT/$who-${tag}high-$run.json"
      stop_all
    done
  done
done

echo "== idle sockets on one node (up to $IDLE_CONNS, $IDLE_STEP at a time, 3 client processes on 127.0.0.2-4)"
IDLE_SRC="--src-ip 127.0.0.2 --src-ip 127.0.0.3 --src-ip 127.0.0.4"
start_ours 1
$LT idle --target ours $ADDRS --pid "gateway0=$GW0_PID" $IDLE_SRC --conns "$IDLE_CONNS" --step "$IDLE_STEP" --procs 3 --json "$OUT/ours-idle.json"
stop_all
start_peer 1
$LT idle --target socketio $ADDRS --pid "peer0=$GW0_PID" $IDLE_SRC --conns "$IDLE_CONNS" --step "$IDLE_STEP" --procs 3 --json "$OUT/peer-idle.json"
stop_all

for run in $(seq 1 "$RUNS"); do
  echo "== core relay $run/$RUNS: 1 gateway + worker"
  start_ours 1
  warm
  $LT ramp $OURS_ARGS $ADDRS $PIDARGS $LOAD --duration-secs "$STEP_SECS" --start 500 --factor 1.25 --refine "$REFINE" --max "$MAX_RATE" --json "$OUT/core-ramp-$run.json"
  $LT run $OURS_ARGS $ADDRS $PIDARGS $LOAD --rate 5000 --duration-secs 15 --json "$OUT/core-5k-$run.json"
  stop_all
done

echo "== chat list: page of 50 out of 100,000"
start_ours 1
$LT chatlist --redis-url "$REDIS_URL" --key-prefix "$PREFIX" --count "$CHAT_ROWS" --gateway "$(echo $ADDRS | awk '{print $2}')" --gateway-metrics "$GW0_METRICS" \
  --samples 2000 --json "$OUT/chatlist.json"
stop_all

python3 scripts/bench-table.py "$OUT" BENCHMARKS.md
echo "raw reports in $OUT; table written to BENCHMARKS.md"

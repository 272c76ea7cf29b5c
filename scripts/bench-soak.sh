#!/usr/bin/env bash
# Soak: one long run at a fixed rate on our stack, RSS of the gateways, the
# worker and Redis sampled every SAMPLE_SECS; prints the memory slope per
# process and Redis' own used_memory before and after. Release builds.
#
#   scripts/bench-soak.sh                         # 1 gateway, 500 msg/s, 150 s
#   NODES=2 RATE=1000 SECS=600 scripts/bench-soak.sh
#
# Settings: NODES (gateways, default 1), RATE (msg/s, default 500), SECS
# (default 150), SAMPLE_SECS (default 10), CUSTOMERS (2000), AGENTS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

NODES=${NODES:-1}
RATE=${RATE:-500}
SECS=${SECS:-150}
SAMPLE_SECS=${SAMPLE_SECS:-10}
CUSTOMERS=${CUSTOMERS:-2000}
AGENTS=${AGENTS:-2}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
OUT=artifacts/soak/$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ensure_toolchain
ensure_redis 6379 "${TMPDIR:-/tmp}/chat-bench-redis"
cargo build --release -q -p gateway -p worker -p loadtest
REDIS_PID=$(redis-cli -u "$REDIS_URL" info server | tr -d '\r' | sed -n 's/^process_id://p')
. scripts/bench-stack.sh
LT=target/release/loadtest
used_memory() { redis-cli -u "$REDIS_URL" info memory | tr -d '\r' | sed -n 's/^used_memory://p'; }

start_ours "$NODES"
LOAD="--customers $CUSTOMERS --agents $AGENTS --warmup-secs 5 --drain-secs 5"
before=$(used_memory)
$LT soak $OURS_ARGS $ADDRS $PIDARGS $LOAD --rate "$RATE" --duration-secs "$SECS" --sample-secs "$SAMPLE_SECS" \
  --json "$OUT/soak.json"
after=$(used_memory)
keys=$(redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX*" | wc -l)
echo "redis used_memory: $((before / 1024)) -> $((after / 1024)) KiB ($(( (after - before) / 1024 )) KiB during the run); $keys keys under $PREFIX"
stop_all
echo "raw report in $OUT/soak.json"

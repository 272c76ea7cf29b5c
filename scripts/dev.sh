#!/usr/bin/env bash
# Runs the whole product on this machine: Redis (started if none answers),
# SQLite by default, one worker, one gateway in dev mode with demo data.
#   scripts/dev.sh
# Settings (optional): GATEWAY_ADDR (default 127.0.0.1:8080), REDIS_URL,
# DATABASE_URL (default sqlite://data/chat.db), CHAT_KEY_PREFIX.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_toolchain
if [ -z "${REDIS_URL:-}" ]; then
  ensure_redis 6379 "$PWD/data/redis"
  export REDIS_URL=redis://127.0.0.1:6379
fi
export DATABASE_URL=${DATABASE_URL:-sqlite://data/chat.db}
export GATEWAY_ADDR=${GATEWAY_ADDR:-127.0.0.1:8080}
export CHAT_DEV=1
mkdir -p data

scripts/web-build.sh
cargo build --release --bins

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

WORKER_METRICS_ADDR=${WORKER_METRICS_ADDR:-127.0.0.1:0} target/release/worker > data/worker.out 2> data/worker.log &
pids+=($!)
target/release/gateway > data/gateway.out 2> data/gateway.log &
pids+=($!)

for _ in $(seq 1 100); do grep -q "listening on" data/gateway.out 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/.*listening on //p' data/gateway.out | head -n1)
[ -n "$url" ] || { echo "gateway did not start; see data/gateway.log" >&2; exit 1; }
cat <<MSG

  Customer chat is running.
    Agent console:   $url/            (log in as demo / demo)
    Customer widget: $url/widget      (pick any username, e.g. alice)
    Metrics:         http://${CHAT_METRICS_ADDR:-127.0.0.1:9092}/metrics
  Logs: data/gateway.log, data/worker.log. Press Ctrl+C to stop.

MSG
wait -n "${pids[@]}"

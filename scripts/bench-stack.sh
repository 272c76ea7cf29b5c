# Starting and stopping the benchmarked stacks (sourced by scripts/bench-*.sh,
# not run). Needs: OUT (directory for logs), REDIS_URL, REDIS_PID; release
# binaries built (in BIN_DIR, default target/release). Every start uses a fresh key prefix, dropped by stop_all.

pids=()
cleanup_procs() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
  pids=()
}
trap cleanup_procs EXIT INT TERM

wait_line() { # file marker -> the text after the marker
  for _ in $(seq 1 300); do
    if grep -q "$2" "$1" 2>/dev/null; then sed -n "s|.*$2||p" "$1" | head -n1; return; fi
    sleep 0.1
  done
  echo "no '$2' in $1" >&2; exit 1
}

drop_keys() { # prefix
  redis-cli -u "$REDIS_URL" --scan --pattern "$1*" | xargs -r -n 1000 redis-cli -u "$REDIS_URL" unlink > /dev/null
}

# start_ours NODES -> sets ADDRS (--gateway flags), PIDARGS (--pid flags), PREFIX
# (the load comes from one address: the per-address connect rate is lifted, as
# the peer has none; it stays on by default in production)
start_ours() {
  local n=$1 i
  PREFIX="bench$RANDOM:"
  local dir="$OUT/ours-$PREFIX"; dir=${dir%:}; mkdir -p "$dir"
  export REDIS_URL DATABASE_URL="sqlite://$dir/chat.db" CHAT_KEY_PREFIX="$PREFIX" CHAT_DEV=1 CHAT_DEMO_DATA=0 \
    CHAT_SEND_RATE=100000 CHAT_CONNECT_RATE_PER_IP=100000 CHAT_MAX_HTTP_CONNECTIONS_PER_IP=100000 RUST_LOG=warn
  WORKER_METRICS_ADDR=127.0.0.1:0 ${BIN_DIR:-target/release}/worker > "$dir/worker.out" 2> "$dir/worker.log" &
  pids+=($!); PIDARGS="--pid worker=$! --pid redis=$REDIS_PID"
  wait_line "$dir/worker.out" "metrics on http://" > /dev/null
  ADDRS=""; GW0_PID=""
  # Several gateways on one host share its cores: each gets cores / nodes
  # tokio threads (GATEWAY_THREADS overrides; README "Running at scale"). Measured
  # with 2 nodes on 2 cores: 1 thread each uses 15% less gateway CPU than
  # 2 each at the same latency (BENCHMARKS.md, session 6).
  local threads=${GATEWAY_THREADS:-$(( $(nproc) / n > 0 ? $(nproc) / n : 1 ))}
  for i in $(seq 0 $((n - 1))); do
    TOKIO_WORKER_THREADS=$threads GATEWAY_ADDR=127.0.0.1:0 CHAT_METRICS_ADDR=127.0.0.1:0 CHAT_NODE_ID="${PREFIX}g$i" ${BIN_DIR:-target/release}/gateway > "$dir/gateway$i.out" 2> "$dir/gateway$i.log" &
    pids+=($!); PIDARGS="$PIDARGS --pid gateway$i=$!"; [ -z "$GW0_PID" ] && GW0_PID=$!
    ADDRS="$ADDRS --gateway $(wait_line "$dir/gateway$i.out" "listening on http://")"
  done
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null -X POST -H 'content-type: application/json' -d '{"username":"demo","password":"demo"}' \
      "http://$(echo $ADDRS | awk '{print $2}')/api/login" && break
    sleep 0.1
  done
  unset DATABASE_URL CHAT_KEY_PREFIX
  OURS_ARGS="--target ours --redis-url $REDIS_URL --key-prefix $PREFIX"
}

start_peer() {
  local n=$1 i
  PREFIX="peer$RANDOM:"
  local dir="$OUT/peer-${PREFIX%:}"; mkdir -p "$dir"
  ADDRS=""; PIDARGS="--pid redis=$REDIS_PID"; GW0_PID=""
  for i in $(seq 0 $((n - 1))); do
    PORT=0 REDIS_URL=$REDIS_URL PEER_PREFIX=$PREFIX node loadtest/peers/socketio/server.js > "$dir/peer$i.out" 2> "$dir/peer$i.log" &
    pids+=($!); PIDARGS="$PIDARGS --pid peer$i=$!"; [ -z "$GW0_PID" ] && GW0_PID=$!
    ADDRS="$ADDRS --gateway $(wait_line "$dir/peer$i.out" "listening on http://")"
  done
  OURS_ARGS="--target socketio"
}

stop_all() { cleanup_procs; drop_keys "$PREFIX"; sleep 1; }

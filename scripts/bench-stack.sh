# Starting and stopping the benchmarked stacks (sourced by scripts/bench-*.sh,
# not run). Needs: OUT (directory for logs), REDIS_URL, REDIS_PID, jq; release
# binaries built (in BIN_DIR, default target/release; the test kit's
# target/release/testkit is built when missing). Every start uses a fresh key
# prefix, dropped by stop_all.

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

# start_ours NODES -> sets ADDRS (STACK_ENV: more `--env K=V` flags for the stack) (--gateway flags), PIDARGS (--pid flags), PREFIX
# (the load comes from one address: the per-address connect rate is lifted, as
# the peer has none; it stays on by default in production). The stack comes
# from the test kit (`testkit stack`, the one way tests start it too), run
# from this build (TESTKIT) with the binaries in BIN_DIR; its JSON line is
# in $dir/stack.json, the processes' logs next to it.
start_ours() {
  local n=$1 tk=${TESTKIT:-target/release/testkit}
  [ -x "$tk" ] || cargo build --release -q -p testkit
  PREFIX="bench$RANDOM:"
  local dir="$OUT/ours-$PREFIX"; dir=${dir%:}; mkdir -p "$dir"
  # Several gateways on one host share its cores: each gets cores / nodes
  # tokio threads (GATEWAY_THREADS overrides; README "Running at scale"). Measured
  # with 2 nodes on 2 cores: 1 thread each uses 15% less gateway CPU than
  # 2 each at the same latency (BENCHMARKS.md, session 6).
  local threads=${GATEWAY_THREADS:-$(( $(nproc) / n > 0 ? $(nproc) / n : 1 ))}
  "$tk" stack --gateways "$n" --workers 1 --db sqlite --dev --ignore-stdin \
    --bin-dir "${BIN_DIR:-target/release}" --dir "$dir" --prefix "$PREFIX" --redis-url "$REDIS_URL" \
    --env CHAT_DEMO_DATA=0 --env CHAT_SEND_RATE=100000 --env CHAT_CONNECT_RATE_PER_IP=100000 --env RUST_LOG=warn \
    --env CHAT_MAX_HTTP_CONNECTIONS_PER_IP=100000 --env CHAT_MAX_SOCKETS_PER_AGENT=100000 \
    --gateway-env TOKIO_WORKER_THREADS="$threads" ${STACK_ENV:-} > "$dir/stack.json" 2> "$dir/stack.log" &
  pids+=($!)
  wait_line "$dir/stack.json" '"prefix"' > /dev/null
  local info; info=$(head -n1 "$dir/stack.json")
  ADDRS=" $(jq -r '[.gateways[] | "--gateway " + .addr] | join(" ")' <<< "$info")"
  PIDARGS="--pid worker=$(jq -r '.workers[0].pid' <<< "$info") --pid redis=$REDIS_PID $(jq -r '[.gateways | to_entries[] | "--pid gateway\(.key)=\(.value.pid)"] | join(" ")' <<< "$info")"
  GW0_PID=$(jq -r '.gateways[0].pid' <<< "$info")
  GW0_METRICS=$(jq -r '.gateways[0].metrics' <<< "$info")
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

#!/usr/bin/env bash
# Idle memory per socket of two gateway builds, alternated in one session
# (A/B for a change): put the binaries at /tmp/gw-before and /tmp/gw-after,
# build the load tool (cargo build --release -p loadtest), then run this.
set -u
LT=${LT:-$(dirname "$0")/../target/release/loadtest}
for round in 1 2; do
  for v in before after; do
    pfx="idle$RANDOM:"; dir=$(mktemp -d)
    ulimit -n 20000
    CHAT_DEV=1 CHAT_DEMO_DATA=0 CHAT_KEY_PREFIX=$pfx GATEWAY_ADDR=127.0.0.1:0 CHAT_METRICS_ADDR=127.0.0.1:0 CHAT_CONNECT_RATE_PER_IP=100000 CHAT_MAX_HTTP_CONNECTIONS_PER_IP=100000 \
      DATABASE_URL=sqlite://$dir/chat.db /tmp/gw-$v > $dir/out 2> $dir/log &
    gw=$!
    for _ in $(seq 1 100); do grep -q listening $dir/out && break; sleep 0.1; done
    addr=$(sed -n 's/.*http:\/\///p' $dir/out)
    $LT idle --gateway $addr --pid gateway0=$gw --conns 8000 --procs 1 --src-ip 127.0.0.2 --settle-secs 3 2>/dev/null | grep -iE "per conn|held|rss" | head -4 | sed "s/^/$v r$round: /"
    kill $gw; wait $gw 2>/dev/null
    redis-cli --scan --pattern "$pfx*" | xargs -r -n 500 redis-cli del > /dev/null
    rm -rf $dir
  done
done

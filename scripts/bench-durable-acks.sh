#!/bin/bash
# Durable acks: p50/p99 of acks, memory vs replica, primary + replica on loopback.
set -u
T=/work/targets/durable/debug
D=/tmp/dur/bench
cd $D
redis-server --port 7401 --save "" --appendonly no --dir $D --dbfilename p.rdb >/dev/null 2>&1 & P=$!
redis-server --port 7402 --save "" --appendonly no --dir $D --dbfilename r.rdb --replicaof 127.0.0.1 7401 >/dev/null 2>&1 & R=$!
sleep 1
for mode in memory replica; do
  redis-cli -p 7401 FLUSHALL >/dev/null
  rm -f $D/chat.db*
  export REDIS_URL=redis://127.0.0.1:7401 DATABASE_URL=sqlite://$D/chat.db CHAT_DEV=1 CHAT_DEMO_DATA=0 RUST_LOG=warn CHAT_ACK_DURABILITY=$mode CHAT_SEND_RATE=1000
  $T/worker >$D/worker-$mode.out 2>&1 & W=$!
  GATEWAY_ADDR=127.0.0.1:7480 $T/gateway >$D/gw-$mode.out 2>&1 & G=$!
  sleep 3
  $T/loadtest run --gateway 127.0.0.1:7480 --redis-url redis://127.0.0.1:7401 --mix relay --customers 50 --agents 1 --rate 200 --duration-secs 10 --warmup-secs 1 --json $D/$mode.json > $D/$mode.txt 2>&1
  kill $G $W; wait $G $W 2>/dev/null
done
kill $P $R

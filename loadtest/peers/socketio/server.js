// The peer for side-by-side benchmarks: the relay job of our gateway, written
// the way a team would with Socket.IO and its Redis streams adapter.
//
// - rooms: `cust:<id>` (the customer's sockets), `watch:<id>` (the agent
//   sockets watching conversation <id>) and `staff` (every agent socket);
// - `watch {conversation}` (agents): join `watch:<id>`, at most 100 per
//   socket (`invalid` beyond), then ack `{conversation}`, so the join has
//   happened when the client hears back; `unwatch` leaves the room. Ours also
//   replays the events after `after` and checks the conversation exists; the
//   peer does neither (it keeps no per-conversation log), which favours it;
// - `send`: sequence number (INCR) and a log entry (XADD, capped) in one
//   MULTI round trip, ack `{seq, ts}` to the sender, then the message to
//   `cust:<conv>` and `watch:<conv>` (sender included, as ours does), and a
//   chat-list row to `staff` (`conversation {id, preview (100 chars),
//   last_ts, last_seq}`; ours coalesces rows per worker batch, the peer sends
//   one per message);
// - `typing`: relayed to the other side (customer -> `watch:<conv>`, agent
//   -> `cust:<conv>`) at most once per 1.5 s per socket and conversation,
//   never stored;
// - `seen`: read state kept in a Redis hash, a `receipt` to the other side
//   (same rooms as typing).
//
// Auth is trusted (`{kind, id}` in the connect packet): the peer does no
// token check, which only favours it. Two processes on one Redis form the
// "two nodes" topology; the adapter carries broadcasts between them.
//
//   PORT=0 REDIS_URL=redis://127.0.0.1:6379 PEER_PREFIX=p: node server.js
//   -> prints `peer listening on http://127.0.0.1:PORT`

"use strict";

const http = require("http");
const { Server } = require("socket.io");
const { createClient } = require("redis");
const { createAdapter } = require("@socket.io/redis-streams-adapter");

const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOST || "127.0.0.1";
const REDIS_URL = process.env.REDIS_URL || "redis://127.0.0.1:6379";
const PREFIX = process.env.PEER_PREFIX || "peer:";
const MAX_TEXT = 4000;
const TYPING_EVERY_MS = 1500;
const LOG_MAXLEN = 100000;
const MAX_WATCHED = 100;
const PREVIEW_CHARS = 100;

async function main() {
  const adapterClient = createClient({ url: REDIS_URL });
  const redis = createClient({ url: REDIS_URL });
  await Promise.all([adapterClient.connect(), redis.connect()]);

  const httpServer = http.createServer((req, res) => {
    if (req.url === "/healthz") {
      res.writeHead(200).end("ok");
      return;
    }
    res.writeHead(404).end();
  });
  const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
    perMessageDeflate: false,
    pingInterval: 25000,
    pingTimeout: 20000,
    maxHttpBufferSize: 64 * 1024,
    adapter: createAdapter(adapterClient, {
      streamName: `${PREFIX}socket.io`,
      channelPrefix: `${PREFIX}socket.io`,
      // Defaults are 100 per read and 10,000 kept: raised so that the peer
      // is not held back (or loses broadcasts) by its defaults at high rates.
      readCount: 1000,
      maxLen: 100000,
      onlyPlaintext: true,
    }),
  });

  io.use((socket, next) => {
    const a = socket.handshake.auth || {};
    if ((a.kind !== "customer" && a.kind !== "agent") || typeof a.id !== "string" || !a.id) {
      return next(new Error("unauthorized"));
    }
    socket.data.kind = a.kind;
    socket.data.id = a.id;
    next();
  });

  io.on("connection", (socket) => {
    const { kind, id } = socket.data;
    socket.join(kind === "customer" ? `cust:${id}` : "staff");
    const typingAt = new Map();
    const watched = new Set();
    const convOf = (m) => (kind === "customer" ? id : m && typeof m.conversation === "string" && m.conversation ? m.conversation : null);
    // The room of the other side of a conversation.
    const otherSide = (conv) => (kind === "customer" ? `watch:${conv}` : `cust:${conv}`);

    socket.on("watch", async (m, ack) => {
      const reply = typeof ack === "function" ? ack : () => {};
      if (kind !== "agent") return reply({ error: "forbidden" });
      const conv = convOf(m);
      if (!conv) return reply({ error: "invalid" });
      if (!watched.has(conv)) {
        if (watched.size >= MAX_WATCHED) return reply({ error: "invalid" });
        watched.add(conv);
        await socket.join(`watch:${conv}`);
      }
      reply({ conversation: conv });
    });

    socket.on("unwatch", async (m, ack) => {
      const reply = typeof ack === "function" ? ack : () => {};
      if (kind !== "agent") return reply({ error: "forbidden" });
      const conv = convOf(m);
      if (!conv) return reply({ error: "invalid" });
      if (watched.delete(conv)) await socket.leave(`watch:${conv}`);
      reply({ conversation: conv });
    });

    socket.on("send", async (m, ack) => {
      const reply = typeof ack === "function" ? ack : () => {};
      const conv = convOf(m);
      if (!conv || !m || typeof m.text !== "string" || m.text.length < 1) return reply({ error: "invalid" });
      if (m.text.length > MAX_TEXT) return reply({ error: "too_large" });
      const ts = Date.now();
      try {
        const [seq] = await redis
          .multi()
          .incr(`${PREFIX}{c:${conv}}:seq`)
          .xAdd(
            `${PREFIX}log`,
            "*",
            { c: conv, k: kind, a: id, t: m.text, ci: String(m.client_id || "") },
            { TRIM: { strategy: "MAXLEN", strategyModifier: "~", threshold: LOG_MAXLEN } },
          )
          .exec();
        reply({ conversation: conv, seq, ts });
        io.to([`cust:${conv}`, `watch:${conv}`]).emit("message", {
          conversation: conv,
          message: { seq, kind, author: { kind, id }, text: m.text, ts, client_id: m.client_id },
        });
        io.to("staff").emit("conversation", { id: conv, preview: m.text.slice(0, PREVIEW_CHARS), last_ts: ts, last_seq: seq });
      } catch (e) {
        reply({ error: "unavailable" });
      }
    });

    socket.on("typing", (m) => {
      const conv = convOf(m);
      if (!conv) return;
      const now = Date.now();
      const last = typingAt.get(conv) || 0;
      if (now - last < TYPING_EVERY_MS) return;
      if (typingAt.size > 1000) typingAt.clear();
      typingAt.set(conv, now);
      const frame = { conversation: conv, who: { kind, id }, expires_in_ms: 5000 };
      io.to(otherSide(conv)).emit("typing", frame);
    });

    socket.on("seen", async (m) => {
      const conv = convOf(m);
      if (!conv || !m || !Number.isInteger(m.seq)) return;
      const side = kind === "customer" ? "customer" : "staff";
      try {
        await redis.hSet(`${PREFIX}{c:${conv}}:rs`, `${side}_seen`, String(m.seq));
        io.to(otherSide(conv)).emit("receipt", { conversation: conv, seen_seq: m.seq, side });
      } catch (e) {
        /* receipts are best effort, as typing */
      }
    });
  });

  httpServer.listen(PORT, HOST, () => {
    const a = httpServer.address();
    console.log(`peer listening on http://${a.address}:${a.port}`);
  });

  const stop = () => {
    io.close();
    Promise.allSettled([adapterClient.quit(), redis.quit()]).then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

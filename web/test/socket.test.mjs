// Unit tests of the WebSocket client (src/lib/socket.ts) against a fake
// WebSocket: resume first, reconnect with backoff, offline pause, the outbox
// (queued while offline, sent once, same client_id on retry), epoch changes.
// The TypeScript module is bundled with esbuild (a Vite dependency) on the fly.

import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { buildSync } from 'esbuild';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FakeWebSocket, tick, until } from './helpers.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'socket-test-'));
buildSync({ entryPoints: [join(here, '../src/lib/socket/index.ts')], bundle: true, format: 'esm', outfile: join(out, 'socket.mjs'), logLevel: 'error' });
const { ChatSocket } = await import(pathToFileURL(join(out, 'socket.mjs')).href);
rmSync(out, { recursive: true, force: true });

// ---------------------------------------------------------------- fakes


const listeners = {};
let online = true;
beforeEach(() => {
  FakeWebSocket.all = [];
  online = true;
  globalThis.WebSocket = FakeWebSocket;
  globalThis.location = { protocol: 'http:', host: 'test' };
  globalThis.window = {
    isSecureContext: false,
    addEventListener: (t, f) => ((listeners[t] ??= new Set()).add(f)),
    removeEventListener: (t, f) => listeners[t]?.delete(f),
  };
  Object.defineProperty(globalThis, 'navigator', { configurable: true, get: () => ({ onLine: online }) });
});
afterEach(() => {
  for (const k of Object.keys(listeners)) delete listeners[k];
});

const hello = (epoch = 'e1', kind = 'agent') =>
  kind === 'agent'
    ? { type: 'hello', user: { kind: 'agent', id: 'a1', username: 'demo' }, epoch }
    : { type: 'hello', user: { kind: 'customer', id: 'cust', username: 'cust' }, epoch, conversation: 'cust' };

async function connected(sock, epoch, kind) {
  await until(() => FakeWebSocket.all.length > 0 && FakeWebSocket.all.at(-1).readyState === 0);
  const ws = FakeWebSocket.all.at(-1);
  ws.open();
  ws.receive(hello(epoch, kind));
  return ws;
}

function newSocket(opts = {}) {
  let tickets = 0;
  const s = new ChatSocket({ getTicket: async () => `t${++tickets}`, ...opts });
  s.start();
  return s;
}

const watchFrames = (ws) => ws.sent.filter((f) => f.type === 'watch' || f.type === 'unwatch');

// ---------------------------------------------------------------- tests

test('resume is the first frame, with the held positions and the epoch', async () => {
  const s = newSocket();
  const ws = await connected(s);
  assert.deepEqual(ws.sent[0], { type: 'resume', positions: {} });
  assert.equal(s.state, 'open');
  s.track('c1', 4);
  ws.receive({ type: 'message', conversation: 'c1', pos: 5, message: { seq: 5, kind: 'customer', text: 'x', ts: 1, deleted: false, reactions: {} } });
  ws.receive({ type: 'edited', conversation: 'c1', pos: 6, seq: 5, text: 'y', edited_at: 2 });
  // Events of untracked conversations do not make up positions.
  ws.receive({ type: 'message', conversation: 'c2', pos: 9, message: { seq: 9, kind: 'customer', text: 'x', ts: 1, deleted: false, reactions: {} } });
  ws.drop();
  assert.equal(s.state, 'reconnecting');
  const ws2 = await connected(s);
  assert.deepEqual(ws2.sent[0], { type: 'resume', positions: { c1: 6 }, epoch: 'e1' });
  assert.match(ws2.url, /\/ws\?ticket=t2$/);
  s.stop();
});

test('order card updates are positioned events: they count in the resume positions', async () => {
  const s = newSocket();
  const ws = await connected(s);
  s.track('c1', 3);
  const seen = [];
  s.onFrame((f) => seen.push(f.type));
  const order = { id: '1042', status: 'ready', steps: [], items: [], total: 3.9, updated_at: 2 };
  ws.receive({ type: 'order', conversation: 'c1', pos: 4, seq: 2, order });
  // Balance frames are state, not events: no position.
  ws.receive({ type: 'points', customer: 'c1', balance: 50, version: 9 });
  assert.equal(s.position('c1'), 4);
  assert.deepEqual(seen, ['order', 'points']);
  ws.drop();
  const ws2 = await connected(s);
  assert.deepEqual(ws2.sent[0], { type: 'resume', positions: { c1: 4 }, epoch: 'e1' });
  s.stop();
});

test('outbox: queued while disconnected, sent after resume, removed on ack, never twice', async () => {
  const s = newSocket();
  const ws = await connected(s);
  ws.drop();
  const item = s.send('c1', 'typed offline');
  assert.equal(s.outbox[0].status, 'queued');
  const sentEvents = [];
  s.onSent((e) => sentEvents.push(e));
  const ws2 = await connected(s);
  assert.equal(ws2.sent[0].type, 'resume');
  const sends = ws2.sent.filter((f) => f.type === 'send');
  assert.equal(sends.length, 1);
  assert.equal(sends[0].client_id, item.client_id);
  assert.equal(sends[0].rid, item.client_id);
  assert.equal(s.outbox[0].status, 'sending');
  ws2.receive({ type: 'ack', rid: item.client_id, conversation: 'c1', seq: 7, ts: 1, pos: 7 });
  assert.equal(s.outbox.length, 0);
  assert.equal(sentEvents[0].seq, 7);
  s.stop();
});

test('unacknowledged sends go again with the same client_id after a drop', async () => {
  const s = newSocket();
  const ws = await connected(s);
  const item = s.send('c1', 'hello');
  assert.equal(ws.sent.filter((f) => f.type === 'send').length, 1);
  ws.drop();
  assert.equal(s.outbox[0].status, 'queued');
  const ws2 = await connected(s);
  const again = ws2.sent.filter((f) => f.type === 'send');
  assert.equal(again.length, 1);
  assert.equal(again[0].client_id, item.client_id);
  // The echoed message (with client_id) also clears the outbox.
  ws2.receive({ type: 'message', conversation: 'c1', pos: 3, message: { seq: 3, kind: 'staff', text: 'hello', ts: 1, deleted: false, reactions: {}, client_id: item.client_id } });
  assert.equal(s.outbox.length, 0);
  s.stop();
});

test('an error marks the message failed; retry reuses the client_id', async () => {
  const s = newSocket();
  const ws = await connected(s);
  const item = s.send('c1', 'will fail');
  ws.receive({ type: 'error', rid: item.client_id, code: 'unavailable', message: 'busy' });
  assert.equal(s.outbox[0].status, 'failed');
  assert.equal(s.outbox[0].error, 'busy');
  s.retry(item.client_id);
  const sends = ws.sent.filter((f) => f.type === 'send');
  assert.equal(sends.length, 2);
  assert.equal(sends[1].client_id, item.client_id);
  assert.equal(s.outbox[0].status, 'sending');
  s.stop();
});

test('offline pauses reconnecting until the browser is online again', async () => {
  const s = newSocket();
  const ws = await connected(s);
  online = false;
  listeners.offline.forEach((f) => f());
  assert.equal(ws.readyState, 3, 'the old socket is not trusted');
  assert.equal(s.state, 'offline');
  await tick(700);
  assert.equal(FakeWebSocket.all.length, 1, 'no attempts while offline');
  online = true;
  listeners.online.forEach((f) => f());
  const ws2 = await connected(s);
  assert.equal(ws2.sent[0].type, 'resume');
  assert.equal(s.state, 'open');
  s.stop();
});

test('reconnect attempts back off', async () => {
  const s = newSocket();
  await connected(s);
  const times = [];
  for (let i = 0; i < 4; i++) {
    const before = FakeWebSocket.all.length;
    const t0 = Date.now();
    FakeWebSocket.all.at(-1).drop();
    await until(() => FakeWebSocket.all.length > before, 5000);
    times.push(Date.now() - t0);
  }
  // 300 ms * 2^n with jitter in [0.5, 1]: 150-300, 300-600, 600-1200, 1200-2400.
  assert.ok(times[3] > times[0], `backoff grows: ${times.join(', ')}`);
  assert.ok(times[3] >= 1100, `fourth delay ${times[3]} ms`);
  s.stop();
});

test('a new epoch drops positions and is reported', async () => {
  const s = newSocket();
  const ws = await connected(s, 'e1');
  s.track('c1', 10);
  const events = [];
  s.onConnected((e) => events.push(e));
  ws.drop();
  await connected(s, 'e2');
  assert.deepEqual(events, [{ reconnect: true, epochChanged: true }]);
  assert.equal(s.position('c1'), undefined);
  s.stop();
});

test('requests resolve on ack and fail fast while disconnected', async () => {
  const s = newSocket();
  const ws = await connected(s);
  const p = s.request({ type: 'edit', conversation: 'c1', seq: 1, text: 'x' });
  const rid = ws.sent.at(-1).rid;
  ws.receive({ type: 'ack', rid, conversation: 'c1', seq: 1, ts: 1 });
  assert.equal((await p).type, 'ack');
  const q = s.request({ type: 'delete', conversation: 'c1', seq: 1 });
  ws.receive({ type: 'error', rid: ws.sent.at(-1).rid, code: 'forbidden', message: 'no' });
  await assert.rejects(q, /no/);
  ws.drop();
  await assert.rejects(s.request({ type: 'delete', conversation: 'c1', seq: 1 }), /Not connected/);
  s.stop();
});

// ---------------------------------------------------------------- watch (agent sockets)

test('agent socket: tracking a new conversation watches it from the held position, untracking unwatches it', async () => {
  const s = newSocket({ watch: true });
  const ws = await connected(s);
  s.track('c1', 7);
  const [w] = watchFrames(ws);
  assert.equal(w.type, 'watch');
  assert.equal(w.conversation, 'c1');
  assert.equal(w.after, 7);
  // Raising the position of a watched conversation sends nothing more.
  s.track('c1', 9);
  assert.equal(watchFrames(ws).length, 1);
  // The replay answers it; live events then move the position.
  ws.receive({ type: 'message', conversation: 'c1', pos: 10, message: { seq: 10, kind: 'customer', text: 'x', ts: 1, deleted: false, reactions: {} } });
  ws.receive({ type: 'replay', conversation: 'c1', from_seq: 9, complete: true, to_seq: 10 });
  assert.equal(s.position('c1'), 10);
  s.untrack('c1');
  assert.deepEqual(watchFrames(ws)[1], { type: 'unwatch', conversation: 'c1' });
  // Untracking what is not tracked sends nothing.
  s.untrack('c1');
  s.untrack('c9');
  assert.equal(watchFrames(ws).length, 2);
  s.stop();
});

test('agent socket: conversations tracked while disconnected are watched by the next resume, not by watch frames', async () => {
  const s = newSocket({ watch: true });
  const ws = await connected(s);
  s.track('c1', 3);
  ws.drop();
  s.track('c2', 5);
  s.untrack('c1');
  const ws2 = await connected(s);
  assert.deepEqual(ws2.sent[0], { type: 'resume', positions: { c2: 5 }, epoch: 'e1' });
  assert.deepEqual(watchFrames(ws2), [], 'the resume already watches c2; c1 is simply not named');
  // Tracked after the resume went out but before hello: needs its own watch.
  ws2.drop();
  await until(() => FakeWebSocket.all.length === 3);
  const ws3 = FakeWebSocket.all.at(-1);
  ws3.open();
  s.track('c3', 0);
  ws3.receive(hello());
  assert.deepEqual(ws3.sent[0], { type: 'resume', positions: { c2: 5 }, epoch: 'e1' });
  assert.deepEqual(
    watchFrames(ws3).map((f) => [f.type, f.conversation, f.after]),
    [['watch', 'c3', 0]],
  );
  s.stop();
});

test('customer sockets never watch', async () => {
  // The widget's socket (no watch option) ...
  const widget = newSocket();
  const ws = await connected(widget, 'e1', 'customer');
  widget.track('cust', 4);
  widget.untrack('cust');
  assert.deepEqual(watchFrames(ws), []);
  widget.stop();
  // ... and even a socket told to watch, once hello says it is a customer's.
  const s = newSocket({ watch: true });
  const ws2 = await connected(s, 'e1', 'customer');
  s.track('cust', 4);
  s.untrack('cust');
  assert.deepEqual(watchFrames(ws2), []);
  s.stop();
});

test('a watch refused for a passing reason is sent again; a watch of an unknown conversation is not', async () => {
  const s = newSocket({ watch: true });
  const ws = await connected(s);
  const errors = [];
  s.onFrame((f) => f.type === 'error' && errors.push(f.code));
  s.track('c1', 2);
  const first = watchFrames(ws)[0];
  assert.ok(first.rid, 'the watch carries a rid so that its error can be told apart');
  ws.receive({ type: 'error', rid: first.rid, code: 'rate_limited', message: 'slow down' });
  await until(() => watchFrames(ws).length === 2, 3000);
  const again = watchFrames(ws)[1];
  assert.equal(again.conversation, 'c1');
  assert.equal(again.after, 2);
  s.track('c2', 0);
  const c2 = watchFrames(ws)[2];
  ws.receive({ type: 'error', rid: c2.rid, code: 'not_found', message: 'no such conversation' });
  await tick(1300);
  assert.equal(watchFrames(ws).length, 3, 'not_found is final');
  assert.deepEqual(errors, ['rate_limited', 'not_found'], 'listeners still see the errors');
  // An outbox item is not touched by a watch error.
  assert.equal(s.outbox.length, 0);
  s.stop();
});

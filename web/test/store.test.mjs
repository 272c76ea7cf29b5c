// Unit tests of the console's conversation store (src/conversation/store.ts) with the
// real socket client over a fake WebSocket and a fake REST server: an agent watches
// exactly the conversations it holds (watch after the loaded history's position,
// unwatch on eviction), replayed events never duplicate messages, an incomplete replay
// reloads history without watching again, and chat-list rows drive the background
// alerts (src/console/alert-rule.ts) and the delivered receipts.

import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { buildSync } from 'esbuild';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FakeWebSocket, tick, until } from './helpers.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, '../src');
const out = mkdtempSync(join(tmpdir(), 'store-test-'));
buildSync({
  stdin: {
    contents: [
      `export { ChatSocket } from './lib/socket/index.ts';`,
      `export { ConversationStore } from './conversation/store.ts';`,
      `export { ChatListStore } from './chat-list/store.ts';`,
      `export { rowAlert } from './console/alert-rule.ts';`,
    ].join('\n'),
    resolveDir: src,
    loader: 'ts',
  },
  bundle: true,
  format: 'esm',
  outfile: join(out, 'store.mjs'),
  logLevel: 'error',
});
const { ChatSocket, ConversationStore, ChatListStore, rowAlert } = await import(pathToFileURL(join(out, 'store.mjs')).href);
rmSync(out, { recursive: true, force: true });

// ---------------------------------------------------------------- fakes


/** The REST side: per conversation, its messages (history) and its row's last position. */
let server;
let requests;

function msg(seq, text, kind = 'customer') {
  return { seq, kind, text, ts: 1_000 + seq, deleted: false, reactions: {}, author: { kind, id: 'x', username: 'x' } };
}

function conv(id, messages) {
  const last = messages.length ? messages.at(-1).seq : 0;
  return { messages, row: { id, customer: { id, username: id }, preview: '', last_ts: 1, unread: 0, last_seq: last } };
}

async function fakeFetch(path) {
  requests.push(path);
  const url = new URL(path, 'http://test');
  let m = /^\/api\/conversations\/([^/]+)\/messages$/.exec(url.pathname);
  let body;
  if (m) {
    const c = server[decodeURIComponent(m[1])];
    body = c ? { items: c.messages.slice(-50), has_more: c.messages.length > 50 } : undefined;
  } else if ((m = /^\/api\/conversations\/([^/]+)$/.exec(url.pathname))) {
    const c = server[decodeURIComponent(m[1])];
    body = c ? { row: c.row, receipts: { customer_delivered: 0, customer_seen: 0, staff_delivered: 0, staff_seen: 0 }, online: false } : undefined;
  }
  const status = body ? 200 : 404;
  const text = JSON.stringify(body ?? { error: { code: 'not_found', message: 'no' } });
  return { ok: status === 200, status, text: async () => text };
}

beforeEach(() => {
  FakeWebSocket.all = [];
  server = {};
  requests = [];
  globalThis.WebSocket = FakeWebSocket;
  globalThis.fetch = fakeFetch;
  globalThis.location = { protocol: 'http:', host: 'test' };
  globalThis.window = { isSecureContext: false, addEventListener: () => {}, removeEventListener: () => {} };
  Object.defineProperty(globalThis, 'navigator', { configurable: true, get: () => ({ onLine: true }) });
});


async function agentConsole() {
  const socket = new ChatSocket({ getTicket: async () => 't', watch: true });
  const store = new ConversationStore(socket, 'staff', () => 'token');
  socket.start();
  await until(() => FakeWebSocket.all.length === 1);
  const ws = FakeWebSocket.all[0];
  ws.open();
  ws.receive({ type: 'hello', user: { kind: 'agent', id: 'a1', username: 'demo' }, epoch: 'e1' });
  return { socket, store, ws };
}

const texts = (store, id) => store.get(id).messages.map((m) => m.text);
const watchFrames = (ws) => ws.sent.filter((f) => f.type === 'watch' || f.type === 'unwatch').map((f) => (f.type === 'watch' ? `watch ${f.conversation} ${f.after}` : `unwatch ${f.conversation}`));

// ---------------------------------------------------------------- tests

test('opening a conversation watches it after the loaded history; replayed events apply once', async () => {
  server.a = conv('a', [msg(1, 'one'), msg(2, 'two')]);
  const { socket, store, ws } = await agentConsole();
  store.open('a');
  await until(() => store.get('a')?.status === 'ready');
  assert.deepEqual(watchFrames(ws), ['watch a 2']);
  // The server replays after 2; an event the page already had (a slow worker, a
  // second watch) comes again too: no duplicate.
  ws.receive({ type: 'message', conversation: 'a', pos: 2, message: msg(2, 'two') });
  ws.receive({ type: 'message', conversation: 'a', pos: 3, message: msg(3, 'three') });
  ws.receive({ type: 'edited', conversation: 'a', pos: 4, seq: 1, text: 'one (edited)', edited_at: 5 });
  ws.receive({ type: 'replay', conversation: 'a', from_seq: 2, complete: true, to_seq: 4 });
  ws.receive({ type: 'message', conversation: 'a', pos: 3, message: msg(3, 'three') });
  assert.deepEqual(texts(store, 'a'), ['one (edited)', 'two', 'three']);
  assert.equal(socket.position('a'), 4);
  // The customer's new message is reported delivered.
  assert.ok(ws.sent.some((f) => f.type === 'delivered' && f.conversation === 'a' && f.seq === 3));
  store.dispose();
  socket.stop();
});

test('switching away and back keeps the conversation watched: nothing is missed or doubled', async () => {
  server.a = conv('a', [msg(1, 'a1')]);
  server.b = conv('b', [msg(1, 'b1')]);
  const { socket, store, ws } = await agentConsole();
  store.open('a');
  await until(() => store.get('a')?.status === 'ready');
  store.open('b');
  await until(() => store.get('b')?.status === 'ready');
  // While B is on screen, A (cached) is still watched and receives its events.
  ws.receive({ type: 'message', conversation: 'a', pos: 2, message: msg(2, 'a2') });
  store.open('a');
  assert.deepEqual(texts(store, 'a'), ['a1', 'a2']);
  assert.deepEqual(watchFrames(ws), ['watch a 1', 'watch b 1'], 'no unwatch of a cached conversation');
  store.dispose();
  socket.stop();
});

test('an evicted conversation is unwatched; opening it again loads and watches it from the new history', async () => {
  const ids = Array.from({ length: 14 }, (_, i) => `c${i}`);
  for (const id of ids) server[id] = conv(id, [msg(1, `${id} first`)]);
  const { socket, store, ws } = await agentConsole();
  for (const id of ids.slice(0, 13)) {
    store.open(id);
    await until(() => store.get(id)?.status === 'ready');
  }
  // Twelve stay cached (and watched); the oldest one goes.
  assert.equal(store.get('c0'), undefined);
  assert.deepEqual(watchFrames(ws).filter((f) => f.startsWith('unwatch')), ['unwatch c0']);
  assert.equal(socket.position('c0'), undefined);
  // Meanwhile c0 goes on (this socket no longer hears it); the history has it.
  server.c0 = conv('c0', [msg(1, 'c0 first'), msg(2, 'c0 second')]);
  store.open('c0');
  await until(() => store.get('c0')?.status === 'ready');
  assert.deepEqual(texts(store, 'c0'), ['c0 first', 'c0 second']);
  assert.equal(watchFrames(ws).at(-2), 'unwatch c1', 'opening a 13th evicts the next oldest');
  assert.equal(watchFrames(ws).at(-1), 'watch c0 2');
  // The replay after 2 brings a message sent between the page and the watch.
  ws.receive({ type: 'message', conversation: 'c0', pos: 3, message: msg(3, 'c0 third') });
  ws.receive({ type: 'replay', conversation: 'c0', from_seq: 2, complete: true, to_seq: 3 });
  assert.deepEqual(texts(store, 'c0'), ['c0 first', 'c0 second', 'c0 third']);
  store.dispose();
  socket.stop();
});

test('an incomplete replay reloads the history and goes on watching without a second watch', async () => {
  server.a = conv('a', [msg(1, 'one')]);
  const { socket, store, ws } = await agentConsole();
  store.open('a');
  await until(() => store.get('a')?.status === 'ready');
  const loadsBefore = requests.filter((p) => p.includes('/messages')).length;
  server.a = conv('a', [msg(1, 'one'), msg(2, 'two'), msg(3, 'three')]);
  ws.receive({ type: 'replay', conversation: 'a', from_seq: 1, complete: false, to_seq: 3 });
  await until(() => requests.filter((p) => p.includes('/messages')).length === loadsBefore + 1 && store.get('a').messages.length === 3);
  await tick(20);
  assert.deepEqual(texts(store, 'a'), ['one', 'two', 'three']);
  assert.deepEqual(watchFrames(ws), ['watch a 1'], 'no unwatch/watch loop');
  assert.equal(socket.position('a'), 3);
  // Live events go on.
  ws.receive({ type: 'message', conversation: 'a', pos: 4, message: msg(4, 'four') });
  assert.deepEqual(texts(store, 'a'), ['one', 'two', 'three', 'four']);
  store.dispose();
  socket.stop();
});

test('a row with unread messages of an unwatched conversation reports them delivered', async () => {
  const { socket, store, ws } = await agentConsole();
  const row = { id: 'z', customer: { id: 'z', username: 'zed' }, preview: 'hi', last_ts: Date.now(), unread: 2, last_seq: 5 };
  ws.receive({ type: 'conversation', ...row });
  ws.receive({ type: 'conversation', ...row }); // the same row again: once
  ws.receive({ type: 'conversation', ...row, id: 'y', unread: 0, last_seq: 9 }); // nothing unread: nothing to report
  assert.deepEqual(
    ws.sent.filter((f) => f.type === 'delivered').map((f) => [f.conversation, f.seq]),
    [['z', 5]],
  );
  assert.deepEqual(watchFrames(ws), [], 'rows do not make the console watch');
  store.dispose();
  socket.stop();
});

test('background alerts come from rows whose unread count went up', async () => {
  const { socket, ws } = await agentConsole();
  const list = new ChatListStore(socket, () => 'token');
  const alerts = [];
  list.onRow(({ row, prevUnread }) => {
    const a = rowAlert(row, prevUnread);
    if (a) alerts.push(a);
  });
  const now = Date.now();
  const row = { id: 'n', customer: { id: 'n', username: 'nina' }, preview: 'Are you open today?', last_ts: now, unread: 1, last_seq: 1 };
  ws.receive({ type: 'conversation', ...row }); // a new conversation
  ws.receive({ type: 'conversation', ...row }); // the same row again (e.g. a receipt)
  ws.receive({ type: 'conversation', ...row, preview: 'Hello?', last_seq: 2, unread: 2 }); // one more message
  ws.receive({ type: 'conversation', ...row, preview: 'Hello?', last_seq: 3, unread: 0 }); // an agent read it
  ws.receive({ type: 'conversation', ...row, preview: 'Thanks', last_seq: 4, unread: 0 }); // a staff reply
  // A row never seen, for an edit in an old conversation: not news.
  ws.receive({ type: 'conversation', id: 'o', customer: { id: 'o', username: 'old' }, preview: 'edited', last_ts: now - 3_600_000, unread: 1, last_seq: 40 });
  assert.deepEqual(
    alerts.map((a) => [a.title, a.body, a.tag, a.conversation]),
    [
      ['New message from nina', 'Are you open today?', 'chat-n', 'n'],
      ['New message from nina', 'Hello?', 'chat-n', 'n'],
    ],
  );
  list.dispose();
  socket.stop();
});

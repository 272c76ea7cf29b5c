// Unit tests of the customer panel's store (src/customer-panel/store.ts) with the
// real socket client over a fake WebSocket and a fake REST server: a section loads
// when first opened and again when it goes stale while open (Refresh, a newer
// `points` frame for Transactions, an order event for the order sections), the
// balance keeps the highest version, the loyalty service being down shows as an
// unavailable balance, and Load more appends the next page without duplicates.

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
const out = mkdtempSync(join(tmpdir(), 'panel-store-test-'));
buildSync({
  stdin: {
    contents: [
      `export { ChatSocket } from './lib/socket/index.ts';`,
      `export { CustomerPanelStore, newerBalance } from './customer-panel/store.ts';`,
    ].join('\n'),
    resolveDir: src,
    loader: 'ts',
  },
  bundle: true,
  format: 'esm',
  outfile: join(out, 'panel-store.mjs'),
  logLevel: 'error',
});
const { ChatSocket, CustomerPanelStore, newerBalance } = await import(pathToFileURL(join(out, 'panel-store.mjs')).href);
rmSync(out, { recursive: true, force: true });

// ---------------------------------------------------------------- fakes

/** The REST side: path (with query) -> [status, body] or a function of the request. */
let routes;
/** Every request: "METHOD path". */
let requests;
/** The last request's headers and body, by "METHOD path". */
let sentWith;

async function fakeFetch(path, init = {}) {
  const method = init.method ?? 'GET';
  requests.push(`${method} ${path}`);
  sentWith[`${method} ${path}`] = { headers: init.headers, body: init.body ? JSON.parse(init.body) : undefined };
  let r = routes[`${method} ${path}`] ?? [404, { error: { code: 'not_found', message: 'no' } }];
  if (typeof r === 'function') r = r();
  const [status, body] = r;
  const text = JSON.stringify(body);
  return { ok: status >= 200 && status < 300, status, text: async () => text };
}

beforeEach(() => {
  FakeWebSocket.all = [];
  requests = [];
  sentWith = {};
  routes = {
    'GET /api/customers/alice': [200, { id: 'alice', username: 'alice', avatar_url: null, points: 85, points_version: 4, points_unavailable: false, online: true }],
    'GET /api/customers/alice/vouchers': [200, { items: [{ id: 'v1', title: 'Free pastry', code: 'PASTRY', expires_at: 1, state: 'active' }] }],
    'GET /api/customers/alice/orders?state=active': [200, { items: [] }],
    'GET /api/customers/alice/orders?state=recent': [200, { items: [] }],
    'GET /api/customers/alice/transactions': [200, { items: [{ id: 'alice:4', kind: 'awarded', amount: 20 }], next_cursor: null }],
  };
  globalThis.WebSocket = FakeWebSocket;
  globalThis.fetch = fakeFetch;
  globalThis.location = { protocol: 'http:', host: 'test' };
  globalThis.window = { isSecureContext: false, addEventListener: () => {}, removeEventListener: () => {} };
  Object.defineProperty(globalThis, 'navigator', { configurable: true, get: () => ({ onLine: true }) });
});

async function panel(id = 'alice') {
  const socket = new ChatSocket({ getTicket: async () => 't', watch: true });
  const store = new CustomerPanelStore(socket, id, () => 'token');
  socket.start();
  await until(() => FakeWebSocket.all.length === 1);
  const ws = FakeWebSocket.all[0];
  ws.open();
  ws.receive({ type: 'hello', user: { kind: 'agent', id: 'a1', username: 'demo' }, epoch: 'e1' });
  store.start();
  await until(() => store.getSnapshot().status !== 'loading');
  return { socket, store, ws, done: () => (store.dispose(), socket.stop()) };
}

const snap = (store) => store.getSnapshot();
const count = (path) => requests.filter((r) => r === `GET ${path}`).length;

// ---------------------------------------------------------------- tests

test('the profile loads at start; a section loads when first opened, not before', async () => {
  const { store, done } = await panel();
  assert.equal(snap(store).status, 'ready');
  assert.deepEqual(snap(store).balance, { points: 85, version: 4 });
  assert.equal(snap(store).customer.online, true);
  assert.equal(snap(store).sections.vouchers.status, 'idle');
  assert.equal(count('/api/customers/alice/vouchers'), 0);
  store.setOpen('vouchers', true);
  assert.equal(snap(store).sections.vouchers.status, 'loading');
  await until(() => snap(store).sections.vouchers.status === 'ready');
  assert.deepEqual(snap(store).sections.vouchers.items.map((v) => v.id), ['v1']);
  // Closing and opening again does not fetch again: nothing went stale.
  store.setOpen('vouchers', false);
  store.setOpen('vouchers', true);
  await tick(10);
  assert.equal(count('/api/customers/alice/vouchers'), 1);
  done();
});

test('Refresh reloads the profile and the open sections now, the closed ones when opened', async () => {
  const { store, done } = await panel();
  store.setOpen('vouchers', true);
  await until(() => snap(store).sections.vouchers.status === 'ready');
  const refreshing = store.refresh();
  assert.equal(snap(store).refreshing, true);
  // A refresh keeps the items on screen until the new ones arrive.
  assert.equal(snap(store).sections.vouchers.status, 'ready');
  await refreshing;
  assert.equal(snap(store).refreshing, false);
  await until(() => count('/api/customers/alice/vouchers') === 2);
  assert.equal(count('/api/customers/alice'), 2);
  assert.equal(count('/api/customers/alice/transactions'), 0, 'a closed section is not fetched');
  store.setOpen('transactions', true);
  await until(() => snap(store).sections.transactions.status === 'ready');
  assert.equal(count('/api/customers/alice/transactions'), 1);
  done();
});

test('points frames: the highest version wins, and a newer balance reloads the open Transactions', async () => {
  const { store, ws, done } = await panel();
  store.setOpen('transactions', true);
  await until(() => snap(store).sections.transactions.status === 'ready');
  ws.receive({ type: 'points', customer: 'alice', balance: 120, version: 6 });
  assert.deepEqual(snap(store).balance, { points: 120, version: 6 });
  await until(() => count('/api/customers/alice/transactions') === 2);
  // An older frame of a concurrent action, and another customer's: ignored.
  ws.receive({ type: 'points', customer: 'alice', balance: 100, version: 5 });
  ws.receive({ type: 'points', customer: 'bob', balance: 1, version: 99 });
  assert.deepEqual(snap(store).balance, { points: 120, version: 6 });
  await tick(10);
  assert.equal(count('/api/customers/alice/transactions'), 2);
  assert.equal(newerBalance({ points: 1, version: null }, { points: 2, version: 1 }), true);
  done();
});

test('order events of this customer reload the open order sections; presence updates the profile', async () => {
  const { store, ws, done } = await panel();
  store.setOpen('activeOrders', true);
  await until(() => snap(store).sections.activeOrders.status === 'ready');
  routes['GET /api/customers/alice/orders?state=active'] = [200, { items: [{ id: '1042', status: 'placed' }] }];
  ws.receive({ type: 'order', conversation: 'alice', pos: 3, seq: 2, order: { id: '1042', status: 'placed' } });
  await until(() => snap(store).sections.activeOrders.items.length === 1);
  assert.equal(count('/api/customers/alice/orders?state=recent'), 0, 'closed: fetched when opened');
  // A card in another conversation does not concern this panel.
  ws.receive({ type: 'order', conversation: 'bob', pos: 3, seq: 2, order: { id: '7' } });
  await tick(10);
  assert.equal(count('/api/customers/alice/orders?state=active'), 2);
  ws.receive({ type: 'presence', customer: 'alice', online: false });
  assert.equal(snap(store).customer.online, false);
  done();
});

test('the loyalty service down: the balance is unavailable, a section fails with Try again', async () => {
  routes['GET /api/customers/alice'] = [200, { id: 'alice', username: 'alice', avatar_url: null, points: null, points_version: null, points_unavailable: true, online: true }];
  routes['GET /api/customers/alice/vouchers'] = [503, { error: { code: 'unavailable', message: 'loyalty down' } }];
  const { store, done } = await panel();
  assert.equal(snap(store).status, 'ready');
  assert.equal(snap(store).balance, null);
  store.setOpen('vouchers', true);
  await until(() => snap(store).sections.vouchers.status === 'error');
  assert.equal(snap(store).sections.vouchers.error, 'The loyalty service is not answering right now.');
  routes['GET /api/customers/alice/vouchers'] = [200, { items: [] }];
  store.retry('vouchers');
  await until(() => snap(store).sections.vouchers.status === 'ready');
  done();
});

test('a profile that never loads is an error; one that loaded once stays ready with a note', async () => {
  routes['GET /api/customers/alice'] = [404, { error: { code: 'not_found', message: 'no such customer' } }];
  const { store, done } = await panel();
  assert.equal(snap(store).status, 'error');
  assert.equal(snap(store).loadError, 'The customer could not be loaded: This customer is not known to the shop.');
  routes['GET /api/customers/alice'] = [200, { id: 'alice', username: 'alice', avatar_url: null, points: 85, points_version: 4, online: true }];
  await store.refresh();
  assert.equal(snap(store).status, 'ready');
  assert.equal(snap(store).loadError, null);
  routes['GET /api/customers/alice'] = [500, { error: { code: 'internal', message: 'boom' } }];
  await store.refresh();
  assert.equal(snap(store).status, 'ready');
  assert.deepEqual(snap(store).balance, { points: 85, version: 4 }, 'the balance shown stays');
  assert.equal(snap(store).loadError, 'The customer could not be loaded: Boom');
  done();
});

test('Load more appends the next page of Transactions without duplicates', async () => {
  routes['GET /api/customers/alice/transactions'] = [200, { items: [{ id: 't3', kind: 'earned', amount: 1 }, { id: 't2', kind: 'earned', amount: 1 }], next_cursor: 'c2' }];
  routes['GET /api/customers/alice/transactions?cursor=c2'] = [200, { items: [{ id: 't2', kind: 'earned', amount: 1 }, { id: 't1', kind: 'earned', amount: 1 }], next_cursor: null }];
  const { store, done } = await panel();
  store.setOpen('transactions', true);
  await until(() => snap(store).sections.transactions.status === 'ready');
  assert.equal(snap(store).sections.transactions.cursor, 'c2');
  store.loadMore('transactions');
  assert.equal(snap(store).sections.transactions.loadingMore, true);
  await until(() => snap(store).sections.transactions.cursor === null);
  assert.deepEqual(snap(store).sections.transactions.items.map((t) => t.id), ['t3', 't2', 't1']);
  done();
});

test('Give Points sends the idempotency key and takes the answer\'s balance', async () => {
  routes['POST /api/customers/alice/points'] = [200, { balance: 135, version: 5, noop: false, transaction: { id: 'alice:5', kind: 'awarded', amount: 50 } }];
  const { store, done } = await panel();
  const r = await store.givePoints(50, 'late order', 'key-1');
  assert.equal(r.balance, 135);
  const sent = sentWith['POST /api/customers/alice/points'];
  assert.equal(sent.headers['Idempotency-Key'], 'key-1');
  assert.deepEqual(sent.body, { amount: 50, reason: 'late order' });
  assert.deepEqual(snap(store).balance, { points: 135, version: 5 });
  // The points frame of the same action comes after: not newer, no change.
  FakeWebSocket.all[0].receive({ type: 'points', customer: 'alice', balance: 135, version: 5 });
  assert.deepEqual(snap(store).balance, { points: 135, version: 5 });
  done();
});

// Unit tests of the widget's session loading (src/widget/session.ts): a
// `#token=` link opened as a page asks before it signs the customer in or
// replaces their session; a framed widget (the embedding page set its URL,
// which frame-ancestors restricts) takes it as it is.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildSync } from 'esbuild';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'widget-session-test-'));
buildSync({
  entryPoints: [join(here, '../src/widget/session.ts')],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  outfile: join(out, 'session.mjs'),
  logLevel: 'silent',
});
const { loadWidgetSession } = await import(pathToFileURL(join(out, 'session.mjs')).href);
rmSync(out, { recursive: true, force: true });

function env({ hash = '', framed = false, answer = false, saved = null } = {}) {
  const store = new Map(saved ? [['chat.widget.session', JSON.stringify(saved)]] : []);
  const e = {
    hash,
    framed,
    asked: [],
    cleared: false,
    confirm: (m) => (e.asked.push(m), answer),
    clearHash: () => (e.cleared = true),
    storage: { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) },
    saved: () => JSON.parse(store.get('chat.widget.session') ?? 'null'),
  };
  return e;
}

const mine = { token: 'cust.mine', customer: { id: 'ann', username: 'ann' }, conversation: 'ann' };
const link = 'token=cust.evil&customer=eve&username=eve';

test('a link opened as a page asks before replacing the session; no keeps it', () => {
  const e = env({ hash: link, saved: mine, answer: false });
  const s = loadWidgetSession(e);
  assert.equal(e.asked.length, 1);
  assert.match(e.asked[0], /"eve".*"ann"/);
  assert.deepEqual(s, mine);
  assert.deepEqual(e.saved(), mine);
  assert.ok(e.cleared, 'the token stays in the address bar');
});

test('a link opened as a page switches after yes', () => {
  const e = env({ hash: link, saved: mine, answer: true });
  const s = loadWidgetSession(e);
  assert.equal(s.token, 'cust.evil');
  assert.equal(e.saved().customer.username, 'eve');
});

test('a link without a current session still asks', () => {
  const e = env({ hash: link, answer: false });
  assert.equal(loadWidgetSession(e), null);
  assert.equal(e.asked.length, 1);
  assert.equal(e.saved(), null);
});

test('a framed widget takes the token its embedding page set', () => {
  const e = env({ hash: link, framed: true, saved: mine });
  assert.equal(loadWidgetSession(e).token, 'cust.evil');
  assert.equal(e.asked.length, 0);
});

test('no token: the saved session; the same token: no question', () => {
  assert.deepEqual(loadWidgetSession(env({ saved: mine })), mine);
  const e = env({ hash: 'token=cust.mine', saved: mine });
  assert.deepEqual(loadWidgetSession(e), mine);
  assert.equal(e.asked.length, 0);
});

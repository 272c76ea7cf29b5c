// An agent works several conversations at once. The console receives a conversation's
// messages only while it watches it (the open one and a few it keeps), but every
// conversation's chat-list row: the list stays live for all of them, an opened
// conversation shows what was said before and live after, and switching between
// conversations (or coming back to one it let go) shows every message exactly once.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { message, newAgent, newCustomer, send, uniqueName, watch, withStack } from './harness.mjs';
import { assertClean, textOf, until } from './util.mjs';

/** This file's stack and browser (started before its tests). */
const env = withStack();

const row = (page, username) => page.locator(`.chat-row[data-username="${username}"]`);
const badge = (page, username) => row(page, username).locator('[data-testid="unread-badge"]');
const preview = (page, username) => textOf(row(page, username).locator('.row-preview'));
const openName = (page) => textOf(page.locator('.conv-name'));

/** The texts of the open conversation's messages, in order. */
const shown = (page) => page.locator('[data-testid="messages"] .msg-text').allTextContents();

/**
 * A customer (created if needed) writes `texts` over its own socket, as the widget
 * would; resolves when the server acknowledged them all. `page` is any page of the app's origin.
 */
async function customerSays(page, username, texts) {
  await page.evaluate(
    async ({ username, texts }) => {
      const r = await fetch('/api/dev/customer-token', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username }) });
      const s = await r.json();
      const t = await (await fetch('/api/ws-ticket', { method: 'POST', headers: { Authorization: `Bearer ${s.token}` } })).json();
      const ws = new WebSocket(`ws://${location.host}/ws?ticket=${encodeURIComponent(t.ticket)}`);
      await new Promise((r) => (ws.onopen = r));
      ws.send(JSON.stringify({ type: 'resume', positions: {} }));
      const acks = new Set();
      const errors = [];
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        if (f.type === 'ack') acks.add(f.rid);
        if (f.type === 'error') errors.push(f.message);
      };
      for (const [i, text] of texts.entries()) {
        ws.send(JSON.stringify({ type: 'send', rid: `m${i}`, conversation: s.conversation, client_id: crypto.randomUUID(), text }));
        // One after the other, as typed.
        while (!acks.has(`m${i}`)) {
          if (errors.length) throw new Error(errors.join('; '));
          await new Promise((r) => setTimeout(r, 30));
        }
      }
      ws.close();
    },
    { username, texts },
  );
}

describe('several conversations at once', () => {
  test('the list stays live for a conversation that is not open; opening it shows its messages, then live ones; switching back and forth shows each message once', async () => {
    const agent = await newAgent(env.browser, env.stack.url);
    const a = uniqueName('abby');
    const b = uniqueName('bert');
    const ca = await newCustomer(env.browser, env.stack.url, a);
    const cb = await newCustomer(env.browser, env.stack.url, b);
    await send(ca.page, 'Hello from Abby');
    await send(cb.page, 'Hello from Bert');
    await message(cb.page, 'Hello from Bert').waitFor();

    // Conversation A is open.
    await row(agent.page, a).click();
    await message(agent.page, 'Hello from Abby').waitFor();
    await until(async () => (await badge(agent.page, a).count()) === 0, { what: "A's badge cleared" });
    await until(async () => (await textOf(badge(agent.page, b))) === '1', { what: "B's unread badge 1" });

    // (a) B writes while A is open: B's row shows it live (preview and unread badge).
    await send(cb.page, 'Bert again, while you read Abby');
    await until(async () => (await preview(agent.page, b)) === 'Bert again, while you read Abby', { what: "B's preview updated live" });
    await until(async () => (await textOf(badge(agent.page, b))) === '2', { what: "B's unread badge 2" });
    assert.equal(await agent.page.locator('.chat-row').first().getAttribute('data-username'), b, 'B moved to the top');
    assert.equal(await openName(agent.page), a, 'A is still the open conversation');
    assert.equal(await message(agent.page, 'Bert again, while you read Abby').count(), 0, "B's message is not shown in A");
    // The console got it (in the list): Bert sees it delivered, not yet seen.
    const bertsOwn = message(cb.page, 'Bert again, while you read Abby').locator('.read-status');
    await until(async () => (await bertsOwn.getAttribute('data-status')) === 'delivered', { what: "delivered on Bert's side" });

    // (b) Opening B shows what B wrote, then B's new messages live (and B's typing).
    await row(agent.page, b).click();
    await message(agent.page, 'Bert again, while you read Abby').waitFor();
    assert.equal(await openName(agent.page), b);
    await until(async () => (await badge(agent.page, b).count()) === 0, { what: "B's badge cleared" });
    await cb.page.getByLabel('Message', { exact: true }).pressSequentially('One more', { delay: 30 });
    await agent.page.locator('[data-testid="typing"]').waitFor({ timeout: 5000 });
    await cb.page.getByLabel('Message', { exact: true }).press('Enter');
    await message(agent.page, 'One more').waitFor();
    await send(agent.page, 'Hi Bert, how can I help?');
    await message(cb.page, 'Hi Bert, how can I help?').waitFor();

    // (c) A writes while B is open; back to A: shown once. B writes while A is open; back to B: shown once.
    await send(ca.page, 'Abby, while you read Bert');
    await until(async () => (await preview(agent.page, a)) === 'Abby, while you read Bert', { what: "A's preview updated live" });
    await until(async () => (await textOf(badge(agent.page, a))) === '1', { what: "A's unread badge 1" });
    await row(agent.page, a).click();
    await message(agent.page, 'Abby, while you read Bert').waitFor();
    await send(cb.page, 'Bert, while you read Abby again');
    await until(async () => (await preview(agent.page, b)) === 'Bert, while you read Abby again', { what: "B's preview updated live" });
    await send(ca.page, 'Abby live');
    await message(agent.page, 'Abby live').waitFor();
    await row(agent.page, b).click();
    await message(agent.page, 'Bert, while you read Abby again').waitFor();
    await send(cb.page, 'Bert live');
    await message(agent.page, 'Bert live').waitFor();
    // Let any late duplicate arrive before counting.
    await new Promise((r) => setTimeout(r, 800));
    assert.deepEqual(await shown(agent.page), [
      'Hello from Bert',
      'Bert again, while you read Abby',
      'One more',
      'Hi Bert, how can I help?',
      'Bert, while you read Abby again',
      'Bert live',
    ]);
    await row(agent.page, a).click();
    await message(agent.page, 'Abby live').waitFor();
    await new Promise((r) => setTimeout(r, 800));
    assert.deepEqual(await shown(agent.page), ['Hello from Abby', 'Abby, while you read Bert', 'Abby live']);
    assertClean(agent, ca, cb);
    for (const x of [agent, ca, cb]) await x.context.close();
  });

  test('after working through a dozen other conversations, the first one shows what was said meanwhile, once, and goes on live', async () => {
    const agent = await newAgent(env.browser, env.stack.url);
    // The customers write from their own sockets (a page of the app's origin runs them).
    const helperContext = await env.browser.newContext();
    const helper = await helperContext.newPage();
    const hw = watch(helper, 'customers');
    await helper.goto(`${env.stack.url}/widget`);

    const first = uniqueName('fern');
    await customerSays(helper, first, ['Fern here: is the terrace open?']);
    await row(agent.page, first).click();
    await message(agent.page, 'Fern here: is the terrace open?').waitFor();

    // Twelve more customers write; the agent answers each in turn.
    for (let i = 1; i <= 12; i++) {
      const n = uniqueName(`cust${i}x`);
      await customerSays(helper, n, [`Question number ${i}`]);
      await row(agent.page, n).click();
      await message(agent.page, `Question number ${i}`).waitFor();
      assert.equal(await openName(agent.page), n);
    }

    // Meanwhile the first customer goes on: the list shows it live.
    await customerSays(helper, first, ['Fern: still there?', 'Fern: we are four people']);
    await until(async () => (await preview(agent.page, first)) === 'Fern: we are four people', { what: "the first conversation's row updated" });
    await until(async () => (await textOf(badge(agent.page, first))) === '2', { what: 'its unread badge 2' });

    await row(agent.page, first).click();
    await message(agent.page, 'Fern: we are four people').waitFor();
    await customerSays(helper, first, ['Fern: and a dog']);
    await message(agent.page, 'Fern: and a dog').waitFor();
    await new Promise((r) => setTimeout(r, 800));
    assert.deepEqual(await shown(agent.page), ['Fern here: is the terrace open?', 'Fern: still there?', 'Fern: we are four people', 'Fern: and a dog']);
    assertClean(agent, hw);
    await agent.context.close();
    await helperContext.close();
  });
});

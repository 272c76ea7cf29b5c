// Console beyond the core workflows: layouts at three widths (with screenshots),
// history paging and quote jumps, order cards, keyboard navigation, tab title.
// The customer panel has its own files: panel.test.mjs, panel-loyalty-down.test.mjs.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { VIEWPORTS, message, newAgent, newCustomer, postOrderEvent, send, shot, uniqueName, webDir, withStack } from './harness.mjs';
import { assertClean, textOf, until } from './util.mjs';

/** This file's stack and browser (started before its tests). */
const env = withStack();

const row = (page, username) => page.locator(`.chat-row[data-username="${username}"]`);
const visible = (page, sel) => page.locator(sel).evaluate((el) => el.offsetParent !== null && el.getBoundingClientRect().width > 0);

/** Sends `n` messages "History 1..n" from the widget page's customer over a second socket. */
async function postHistory(page, n, replyToFirst) {
  await page.evaluate(
    async ({ n, replyToFirst }) => {
      const s = JSON.parse(localStorage.getItem('chat.widget.session'));
      const t = await (await fetch('/api/ws-ticket', { method: 'POST', headers: { Authorization: `Bearer ${s.token}` } })).json();
      const ws = new WebSocket(`ws://${location.host}/ws?ticket=${encodeURIComponent(t.ticket)}`);
      await new Promise((r) => (ws.onopen = r));
      ws.send(JSON.stringify({ type: 'resume', positions: {} }));
      const acks = new Map();
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        if (f.type === 'ack') acks.set(f.rid, f.seq);
      };
      const total = n + (replyToFirst ? 1 : 0);
      for (let i = 1; i <= n; i++) {
        ws.send(JSON.stringify({ type: 'send', rid: `h${i}`, conversation: s.conversation, client_id: crypto.randomUUID(), text: `History ${i}` }));
        await new Promise((r) => setTimeout(r, 70));
      }
      while (acks.size < n) await new Promise((r) => setTimeout(r, 50));
      if (replyToFirst) {
        ws.send(
          JSON.stringify({ type: 'send', rid: 'reply', conversation: s.conversation, client_id: crypto.randomUUID(), text: 'About my very first message', reply_to: acks.get('h1') }),
        );
        while (acks.size < total) await new Promise((r) => setTimeout(r, 50));
      }
      ws.close();
    },
    { n, replyToFirst },
  );
}

describe('console', () => {
  test('layouts: three columns on desktop, navigation between columns on tablet and phone (screenshots)', async () => {
    // Each run has its own Redis prefix and database, so a plain name is unique here.
    const name = 'maya';
    const customer = await newCustomer(env.browser, env.stack.url, name, { viewport: VIEWPORTS.phone });
    await send(customer.page, 'Hi! Do you still have the seasonal muffins?');
    await send(customer.page, 'And can I reserve two for tomorrow morning?');

    // Desktop: list, conversation and customer info side by side.
    const desk = await newAgent(env.browser, env.stack.url, { viewport: VIEWPORTS.desktop });
    await row(desk.page, name).click();
    const ask = message(desk.page, 'And can I reserve two for tomorrow morning?');
    await ask.hover();
    await ask.getByRole('button', { name: 'Reply' }).click();
    await send(desk.page, 'We do! I reserved two for you, see you tomorrow.');
    await message(customer.page, 'We do! I reserved two for you, see you tomorrow.').waitFor();
    await until(async () => (await message(desk.page, 'We do! I reserved two for you, see you tomorrow.').locator('.read-status').getAttribute('data-status')) === 'seen', {
      what: 'seen',
    });
    const reacted = message(customer.page, 'We do! I reserved two for you, see you tomorrow.');
    await reacted.click();
    await reacted.getByRole('button', { name: 'React' }).click();
    await customer.page.getByRole('menuitemcheckbox', { name: 'heart' }).click();
    await message(desk.page, 'We do! I reserved two for you, see you tomorrow.').locator('.chip').waitFor();
    for (const col of ['.col-list', '.col-conv', '.col-info']) assert.ok(await visible(desk.page, col), `${col} visible on desktop`);
    await desk.page.locator('.customer-panel .points-value').waitFor();
    await desk.page.mouse.move(0, 0);
    await shot(desk.page, 'desktop-console');
    if (process.env.UPDATE_DOCS_SCREENSHOT) {
      // The README's picture: `UPDATE_DOCS_SCREENSHOT=1 npm run e2e`.
      mkdirSync(join(webDir, '..', 'docs'), { recursive: true });
      await desk.page.screenshot({ path: join(webDir, '..', 'docs', 'console.png') });
    }

    // Tablet: list + conversation; the info panel replaces the conversation and back.
    const tab = await newAgent(env.browser, env.stack.url, { viewport: VIEWPORTS.tablet, label: 'tablet agent' });
    await row(tab.page, name).click();
    await message(tab.page, 'We do! I reserved two for you, see you tomorrow.').waitFor();
    assert.ok(await visible(tab.page, '.col-list'));
    assert.ok(await visible(tab.page, '.col-conv'));
    assert.ok(!(await visible(tab.page, '.col-info')), 'info hidden on tablet until asked');
    await shot(tab.page, 'tablet-conversation');
    await tab.page.getByRole('button', { name: 'Customer info' }).click();
    assert.ok(await visible(tab.page, '.col-info'));
    assert.ok(!(await visible(tab.page, '.col-conv')));
    await shot(tab.page, 'tablet-info');
    await tab.page.getByRole('button', { name: 'Back to conversation' }).click();
    assert.ok(await visible(tab.page, '.col-conv'));

    // Phone: one column at a time: list -> conversation -> info and back.
    const phone = await newAgent(env.browser, env.stack.url, { viewport: VIEWPORTS.phone, label: 'phone agent' });
    assert.ok(await visible(phone.page, '.col-list'));
    assert.ok(!(await visible(phone.page, '.col-conv')));
    await shot(phone.page, 'phone-list');
    await row(phone.page, name).click();
    await message(phone.page, 'We do! I reserved two for you, see you tomorrow.').waitFor();
    await phone.page.mouse.move(380, 830);
    assert.ok(!(await visible(phone.page, '.col-list')));
    assert.ok(await visible(phone.page, '.col-conv'));
    await shot(phone.page, 'phone-conversation');
    await phone.page.getByRole('button', { name: 'Customer info' }).click();
    assert.ok(await visible(phone.page, '.col-info'));
    assert.ok(!(await visible(phone.page, '.col-conv')));
    await shot(phone.page, 'phone-info');
    await phone.page.getByRole('button', { name: 'Back to conversation' }).click();
    await phone.page.getByRole('button', { name: 'Back to conversations' }).click();
    assert.ok(await visible(phone.page, '.col-list'));
    await shot(customer.page, 'phone-widget');

    assertClean(desk, tab, phone, customer);
    for (const x of [desk, tab, phone, customer]) await x.context.close();
  });

  test('older history loads on scroll up; a quote loads older history to reach the original', async () => {
    const a = uniqueName('hank');
    const ca = await newCustomer(env.browser, env.stack.url, a);
    await postHistory(ca.page, 70, true);
    const agent = await newAgent(env.browser, env.stack.url);

    await row(agent.page, a).click();
    const quoted = message(agent.page, 'About my very first message');
    await quoted.waitFor();
    assert.equal(await message(agent.page, 'History 1').count(), 0, 'only the latest page is loaded');
    await quoted.locator('.quote').click();
    const first = message(agent.page, 'History 1');
    await first.waitFor({ timeout: 10_000 });
    await until(() => first.evaluate((el) => el.classList.contains('highlight')), { what: 'original highlighted' });
    await until(
      () =>
        first.evaluate((el) => {
          const box = el.getBoundingClientRect();
          const list = el.closest('.messages').getBoundingClientRect();
          return box.top >= list.top && box.bottom <= list.bottom;
        }),
      { what: 'original scrolled into view' },
    );

    const b = uniqueName('ivan');
    const cb = await newCustomer(env.browser, env.stack.url, b);
    await postHistory(cb.page, 65, false);
    await row(agent.page, b).click();
    await message(agent.page, 'History 65').waitFor();
    assert.equal(await message(agent.page, 'History 1').count(), 0);
    await until(
      async () => {
        await agent.page.locator('[data-testid="messages"]').evaluate((el) => (el.scrollTop = 0));
        return (await message(agent.page, 'History 1').count()) === 1;
      },
      { what: 'older page loaded on scroll up' },
    );
    // Exactly once each, in order.
    const texts = (await agent.page.locator('.msg-text').allTextContents()).filter((t) => t.startsWith('History '));
    assert.deepEqual(texts, Array.from({ length: 65 }, (_, i) => `History ${i + 1}`));
    assertClean(agent, ca, cb);
    for (const x of [agent, ca, cb]) await x.context.close();
  });

  test('order progress cards and system messages render as specified', async () => {
    const name = uniqueName('otto');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'I just ordered');
    const agent = await newAgent(env.browser, env.stack.url);
    await row(agent.page, name).click();
    await message(agent.page, 'I just ordered').waitFor();
    // The order system posts its events (service token); the card follows the newest.
    const items = [
      { name: 'Latte', qty: 2, price: 3.5 },
      { name: 'Croissant', qty: 1, price: 2.25 },
    ];
    const t0 = Date.now();
    const id = `10${Math.floor(Math.random() * 1e5)}`;
    await postOrderEvent(env.stack, { order_id: id, customer_id: name, status: 'placed', items, total: 9.25, ts: t0 });
    await postOrderEvent(env.stack, { order_id: id, customer_id: name, status: 'preparing', items, total: 9.25, ts: t0 + 1000 });
    const card = agent.page.locator(`.order-card[data-order="${id}"][data-status="preparing"]`);
    await card.waitFor();
    assert.deepEqual(await card.locator('.order-steps li').evaluateAll((els) => els.map((e) => e.className)), ['done', 'done', 'current', '', '']);
    assert.match(await textOf(card), /2× Latte\s*€7\.00/);
    assert.match(await textOf(card.locator('.order-total')), /€9\.25/);
    // System messages: centred and muted, Reply and React only.
    const sys = agent.page.locator('.msg-system', { hasText: `Order #${id} is now preparing` });
    await sys.waitFor();
    const box = await sys.locator('.system-text').boundingBox();
    const pane = await agent.page.locator('[data-testid="messages"]').boundingBox();
    assert.ok(Math.abs(box.x + box.width / 2 - (pane.x + pane.width / 2)) < 40, 'system message centred');
    await sys.hover();
    await sys.getByRole('button', { name: 'Reply' }).waitFor();
    await sys.getByRole('button', { name: 'React' }).waitFor();
    assert.equal(await sys.getByRole('button', { name: 'Edit' }).count(), 0);
    // A cancelled order: placed, then cancelled.
    const gone = `${id}9`;
    await postOrderEvent(env.stack, { order_id: gone, customer_id: name, status: 'cancelled', items: [{ name: 'Iced tea', qty: 1, price: 3 }], total: 3, ts: t0 + 2000 });
    const cancelled = agent.page.locator(`.order-card[data-order="${gone}"][data-status="cancelled"]`);
    await cancelled.waitFor();
    assert.deepEqual(await cancelled.locator('.order-steps li').evaluateAll((els) => els.map((e) => `${e.dataset.step}:${e.className}`)), [
      'placed:done',
      'cancelled:current cancelled',
    ]);
    assert.match(await textOf(cancelled), /This order was cancelled/);
    await customer.page.locator(`.order-card[data-order="${gone}"][data-status="cancelled"]`).waitFor();
    await agent.page.mouse.move(0, 0);
    await shot(agent.page, 'desktop-order-cards');
    assertClean(agent, customer);
    await agent.context.close();
    await customer.context.close();
  });

  test('composer grows with its text; Shift+Enter breaks the line, Enter sends', async () => {
    const name = uniqueName('gus');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Multi-line test');
    const agent = await newAgent(env.browser, env.stack.url);
    await row(agent.page, name).click();
    await message(agent.page, 'Multi-line test').waitFor();
    const box = agent.page.getByLabel('Message', { exact: true });
    const h0 = await box.evaluate((el) => el.getBoundingClientRect().height);
    await box.pressSequentially('Line one');
    await box.press('Shift+Enter');
    await box.pressSequentially('Line two');
    await box.press('Shift+Enter');
    await box.pressSequentially('Line three');
    const h1 = await box.evaluate((el) => el.getBoundingClientRect().height);
    assert.ok(h1 > h0 + 20, `text area grew from ${h0} to ${h1}`);
    await box.press('Enter');
    const sent = customer.page.locator('.msg-text', { hasText: 'Line one' });
    await sent.waitFor();
    assert.equal(await sent.textContent(), 'Line one\nLine two\nLine three');
    assert.equal(await box.inputValue(), '');
    await until(async () => (await box.evaluate((el) => el.getBoundingClientRect().height)) <= h0 + 1, { what: 'text area shrinks back' });
    assertClean(agent, customer);
    for (const x of [agent, customer]) await x.context.close();
  });

  test('background alerts: a notification and a sound per new customer message, also for conversations that are not open; a click opens the conversation', async () => {
    const context = await env.browser.newContext({ viewport: VIEWPORTS.desktop });
    // Record notifications and tones instead of showing them; the page is "in the background".
    await context.addInitScript(() => {
      window.__alerts = { notes: [], shown: [], tones: 0 };
      class FakeNotification {
        static permission = 'granted';
        static requestPermission() {
          return Promise.resolve('granted');
        }
        constructor(title, opts) {
          window.__alerts.notes.push({ title, body: opts?.body, tag: opts?.tag });
          window.__alerts.shown.push(this);
        }
        close() {}
      }
      window.Notification = FakeNotification;
      const Osc = window.OscillatorNode;
      if (Osc) {
        const start = Osc.prototype.start;
        Osc.prototype.start = function (...a) {
          window.__alerts.tones++;
          return start.apply(this, a);
        };
      }
    });
    const page = await context.newPage();
    const { watch } = await import('./harness.mjs');
    const w = watch(page, 'agent');
    // A conversation the agent has open (its messages arrive live to the console).
    const openName = uniqueName('olga');
    const open = await newCustomer(env.browser, env.stack.url, openName);
    await send(open.page, 'I have a question');
    await page.goto(env.stack.url);
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('link', { name: /^Chat/ }).click(); // the first click unlocks sound
    await row(page, openName).click();
    await message(page, 'I have a question').waitFor();
    await until(async () => (await row(page, openName).locator('[data-testid="unread-badge"]').count()) === 0, { what: 'open conversation read' });
    await page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
      // From here on (a headless page may count as unfocused, hence "in the background", earlier).
      window.__alerts.notes.length = 0;
      window.__alerts.shown.length = 0;
      window.__alerts.tones = 0;
    });
    const notes = () => page.evaluate(() => window.__alerts.notes);
    const noteCount = (n) => until(async () => ((await notes()).length >= n ? notes() : null), { what: `${n} notification(s)` });

    // A new customer writes: their conversation is not open (the console only gets its row).
    const name = uniqueName('nina');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Are you open today?');
    let got = await noteCount(1);
    assert.deepEqual(got[0], { title: `New message from ${name}`, body: 'Are you open today?', tag: `chat-${name}` });
    assert.ok((await page.evaluate(() => window.__alerts.tones)) >= 1, 'a sound played');
    await send(customer.page, 'Until what time?');
    got = await noteCount(2);
    assert.deepEqual(got[1], { title: `New message from ${name}`, body: 'Until what time?', tag: `chat-${name}` });
    // The open conversation alerts too (the page is in the background), once per message.
    await send(open.page, 'Hello? Anyone?');
    got = await noteCount(3);
    assert.deepEqual(got[2], { title: `New message from ${openName}`, body: 'Hello? Anyone?', tag: `chat-${openName}` });
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await notes()).length, 3, `one notification per message: ${JSON.stringify(await notes())}`);
    const tones = await page.evaluate(() => window.__alerts.tones);
    assert.ok(tones >= 3, `a sound per message (${tones})`);

    // Clicking the notification opens its conversation.
    await page.evaluate(() => window.__alerts.shown[1].onclick());
    await until(async () => new URL(page.url()).pathname === `/chat/${name}`, { what: 'navigated to the conversation' });
    await message(page, 'Until what time?').waitFor();
    assert.equal(await textOf(page.locator('.conv-name')), name);
    assertClean(w, customer, open);
    await context.close();
    await customer.context.close();
    await open.context.close();
  });

  test('keyboard navigation of the list, unread total in the tab title', async () => {
    const agent = await newAgent(env.browser, env.stack.url);
    await agent.page.locator('.chat-row').first().waitFor();
    const before = await agent.page.title();
    const name = uniqueName('kira');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Keyboard test');
    await row(agent.page, name).waitFor();
    await until(async () => /^\(\d+\)/.test(await agent.page.title()), { what: 'unread count in the title' });
    const n = Number((await agent.page.title()).match(/^\((\d+)\)/)[1]);
    assert.ok(n >= 1, `title ${before} -> ${await agent.page.title()}`);

    await agent.page.getByLabel('Search by username').focus();
    await agent.page.keyboard.press('ArrowDown'); // into the list
    const firstName = await agent.page.locator('.chat-row').nth(0).getAttribute('data-username');
    const secondName = await agent.page.locator('.chat-row').nth(1).getAttribute('data-username');
    await agent.page.keyboard.press('ArrowDown');
    await agent.page.keyboard.press('Enter');
    await until(async () => (await agent.page.locator('.conv-name').count()) === 1 && (await textOf(agent.page.locator('.conv-name'))) === secondName, {
      what: 'second row opened',
    });
    assert.match(agent.page.url(), new RegExp(`/chat/${secondName}$`));
    await agent.page.keyboard.press('Escape');
    await until(async () => new URL(agent.page.url()).pathname === '/chat', { what: 'Esc back to the list' });
    await agent.page.keyboard.press('ArrowUp');
    await agent.page.keyboard.press('Enter');
    await until(async () => (await agent.page.locator('.conv-name').count()) === 1 && (await textOf(agent.page.locator('.conv-name'))) === firstName, {
      what: 'first row opened',
    });
    // Opening the unread conversation lowers the title count.
    if (firstName === name) await until(async () => !(await agent.page.title()).startsWith(`(${n})`) || n === 0, { what: 'title count drops' });
    assertClean(agent, customer);
    for (const x of [agent, customer]) await x.context.close();
  });
});

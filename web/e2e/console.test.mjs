// Console beyond the core workflows: layouts at three widths (with screenshots),
// history paging and quote jumps, keyboard navigation, tab title, customer panel.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { VIEWPORTS, launchBrowser, message, newAgent, newCustomer, send, shot, startStack, uniqueName, webDir } from './harness.mjs';
import { assertClean, textOf, until } from './util.mjs';

let stack;
let browser;

before(async () => {
  stack = await startStack();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

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
    const customer = await newCustomer(browser, stack.url, name, { viewport: VIEWPORTS.phone });
    await send(customer.page, 'Hi! Do you still have the seasonal muffins?');
    await send(customer.page, 'And can I reserve two for tomorrow morning?');

    // Desktop: list, conversation and customer info side by side.
    const desk = await newAgent(browser, stack.url, { viewport: VIEWPORTS.desktop });
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
    const tab = await newAgent(browser, stack.url, { viewport: VIEWPORTS.tablet, label: 'tablet agent' });
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
    const phone = await newAgent(browser, stack.url, { viewport: VIEWPORTS.phone, label: 'phone agent' });
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
    const ca = await newCustomer(browser, stack.url, a);
    await postHistory(ca.page, 70, true);
    const agent = await newAgent(browser, stack.url);

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
    const cb = await newCustomer(browser, stack.url, b);
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
    const customer = await newCustomer(browser, stack.url, name);
    await send(customer.page, 'I just ordered');
    // The order backend comes later: inject the order message frame into the agent's socket.
    const context = await browser.newContext({ viewport: VIEWPORTS.desktop });
    const page = await context.newPage();
    let toPage = null;
    await page.routeWebSocket(/\/ws\?/, (ws) => {
      const server = ws.connectToServer();
      toPage = (f) => ws.send(JSON.stringify(f));
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => ws.send(m));
    });
    const { watch } = await import('./harness.mjs');
    const w = watch(page, 'agent');
    await page.goto(stack.url);
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('link', { name: /^Chat/ }).click();
    await row(page, name).click();
    await message(page, 'I just ordered').waitFor();
    const order = (seq, status) => ({
      type: 'message',
      conversation: name,
      pos: seq,
      message: {
        seq,
        kind: 'order',
        text: `Order 1042 ${status}`,
        ts: Date.now(),
        deleted: false,
        reactions: {},
        order: { order_id: '1042', status, items: [{ name: 'Latte', qty: 2, price: 3.5 }, { name: 'Croissant', qty: 1, price: 2.25 }], total: 9.25 },
      },
    });
    toPage(order(900, 'preparing'));
    const card = page.locator('.order-card').first();
    await card.waitFor();
    assert.equal(await card.getAttribute('data-status'), 'preparing');
    assert.deepEqual(await card.locator('.order-steps li').evaluateAll((els) => els.map((e) => e.className)), ['done', 'done', 'current', '', '']);
    assert.match(await textOf(card), /2× Latte/);
    assert.match(await textOf(card.locator('.order-total')), /9\.25/);
    // System messages: centred and muted, Reply and React only.
    toPage({ type: 'message', conversation: name, pos: 899, message: { seq: 899, kind: 'system', text: 'Order 1042 was placed', ts: Date.now(), deleted: false, reactions: {} } });
    const sys = page.locator('.msg-system', { hasText: 'Order 1042 was placed' });
    await sys.waitFor();
    const box = await sys.locator('.system-text').boundingBox();
    const pane = await page.locator('[data-testid="messages"]').boundingBox();
    assert.ok(Math.abs(box.x + box.width / 2 - (pane.x + pane.width / 2)) < 40, 'system message centred');
    await sys.hover();
    await sys.getByRole('button', { name: 'Reply' }).waitFor();
    await sys.getByRole('button', { name: 'React' }).waitFor();
    assert.equal(await sys.getByRole('button', { name: 'Edit' }).count(), 0);
    toPage(order(901, 'cancelled'));
    await page.locator('.order-card[data-status="cancelled"]').waitFor();
    await page.mouse.move(0, 0);
    await shot(page, 'desktop-order-cards');
    assert.match(await textOf(page.locator('.order-card[data-status="cancelled"]')), /cancelled/i);
    assertClean(w, customer);
    await context.close();
    await customer.context.close();
  });

  test('composer grows with its text; Shift+Enter breaks the line, Enter sends', async () => {
    const name = uniqueName('gus');
    const customer = await newCustomer(browser, stack.url, name);
    await send(customer.page, 'Multi-line test');
    const agent = await newAgent(browser, stack.url);
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

  test('background alerts: desktop notification and sound for a new customer message', async () => {
    const context = await browser.newContext({ viewport: VIEWPORTS.desktop });
    // Record notifications and tones instead of showing them; the page is "in the background".
    await context.addInitScript(() => {
      window.__alerts = { notes: [], tones: 0 };
      class FakeNotification {
        static permission = 'granted';
        static requestPermission() {
          return Promise.resolve('granted');
        }
        constructor(title, opts) {
          window.__alerts.notes.push({ title, body: opts?.body });
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
    await page.goto(stack.url);
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('link', { name: /^Chat/ }).click(); // the first click unlocks sound
    await page.locator('.chat-row').first().waitFor();
    await page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    const name = uniqueName('nina');
    const customer = await newCustomer(browser, stack.url, name);
    await send(customer.page, 'Are you open today?');
    const alerts = await until(
      async () => {
        const a = await page.evaluate(() => window.__alerts);
        return a.notes.length ? a : null;
      },
      { what: 'a notification' },
    );
    assert.equal(alerts.notes[0].title, `New message from ${name}`);
    assert.equal(alerts.notes[0].body, 'Are you open today?');
    assert.ok(alerts.tones >= 1, 'a sound played');
    assertClean(w, customer);
    await context.close();
    await customer.context.close();
  });

  test('keyboard navigation of the list, unread total in the tab title', async () => {
    const agent = await newAgent(browser, stack.url);
    await agent.page.locator('.chat-row').first().waitFor();
    const before = await agent.page.title();
    const name = uniqueName('kira');
    const customer = await newCustomer(browser, stack.url, name);
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

  test('customer info panel against the loyalty API of PROTOCOL.md (REST mocked until that backend lands)', async () => {
    const agent = await newAgent(browser, stack.url);
    const seen = { keys: [], bodies: [] };
    let balance = 120;
    await agent.page.route(/\/api\/customers\/bob(\/.*)?(\?.*)?$/, async (route) => {
      const req = route.request();
      const url = new URL(req.url());
      const json = (body) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
      if (url.pathname === '/api/customers/bob') return route.continue();
      if (url.pathname.endsWith('/vouchers')) return json({ items: [{ id: 'v1', code: 'FREECOFFEE', title: 'Free coffee', expires_at: Date.now() + 86_400_000 }] });
      if (url.pathname.endsWith('/orders') && url.searchParams.get('state') === 'active')
        return json({ items: [{ order_id: '2001', status: 'preparing', items: [{ name: 'Flat white', qty: 1 }], total: 3.8 }] });
      if (url.pathname.endsWith('/orders')) return json({ items: [{ order_id: '1990', status: 'completed', items: [{ name: 'Bagel', qty: 2 }], total: 6 }] });
      if (url.pathname.endsWith('/transactions')) return json({ items: [{ id: 't1', amount: 20, kind: 'awarded', reason: 'Sorry for the wait' }] });
      if (url.pathname.endsWith('/points/reset')) {
        seen.keys.push(req.headers()['idempotency-key']);
        balance = 0;
        return json({ balance, transaction: { id: 't3', amount: -145 } });
      }
      if (url.pathname.endsWith('/points')) {
        seen.keys.push(req.headers()['idempotency-key']);
        seen.bodies.push(req.postDataJSON());
        balance += req.postDataJSON().amount;
        return json({ balance, transaction: { id: 't2', amount: req.postDataJSON().amount } });
      }
      return route.continue();
    });
    await row(agent.page, 'bob').click();
    const panel = agent.page.locator('.customer-panel');
    await panel.locator('.profile-name', { hasText: 'bob' }).waitFor();

    const expand = async (title, expect) => {
      await panel.getByRole('button', { name: new RegExp(`^${title}`) }).click();
      await panel.locator('.section.open', { hasText: expect }).waitFor();
    };
    await expand('Vouchers', 'Free coffee');
    await expand('Active Orders', 'Order #2001');
    await expand('Recent Orders', '2× Bagel');
    await expand('Transactions', 'Sorry for the wait');
    await shot(agent.page, 'desktop-customer-panel');

    await panel.getByRole('button', { name: 'Give Points' }).click();
    const dialog = agent.page.getByRole('dialog', { name: 'Give Points' });
    await dialog.getByLabel('Amount').fill('25');
    await dialog.getByLabel('Reason (optional)').fill('Birthday');
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await dialog.waitFor({ state: 'detached' });
    await until(async () => (await textOf(panel.locator('.points-value'))) === '145', { what: 'balance updated' });
    assert.deepEqual(seen.bodies[0], { amount: 25, reason: 'Birthday' });
    assert.match(seen.keys[0], /^[0-9a-f-]{36}$/, 'Idempotency-Key sent');

    await panel.getByRole('button', { name: 'Reset Balance' }).click();
    const confirm = agent.page.getByRole('dialog', { name: 'Reset Balance' });
    await confirm.getByRole('button', { name: 'Reset to 0' }).click();
    await until(async () => (await textOf(panel.locator('.points-value'))) === '0', { what: 'balance reset' });
    assert.equal(seen.keys.length, 2);
    assert.notEqual(seen.keys[0], seen.keys[1]);

    // Then tell the customer, as the workflow says.
    await send(agent.page, 'I just added 25 bonus points to your account!');
    await message(agent.page, 'I just added 25 bonus points to your account!').waitFor();
    assertClean(agent);
    await agent.context.close();
  });

  test('customer info panel: profile and points, sections and actions never crash', async () => {
    const agent = await newAgent(browser, stack.url);
    await row(agent.page, 'carol').click();
    const panel = agent.page.locator('.customer-panel');
    await panel.locator('.profile-name', { hasText: 'carol' }).waitFor();
    await until(async () => /^\d[\d,]*$|Not available yet/.test(await textOf(panel.locator('.points-value'))), { what: 'points shown' });
    for (const label of ['Reset Balance', 'Refresh', 'Give Points']) await panel.getByRole('button', { name: label }).waitFor();
    assertClean(agent);

    // The loyalty endpoints belong to a later issue: they may answer 404/501 today.
    agent.pause();
    for (const title of ['Vouchers', 'Active Orders', 'Recent Orders', 'Transactions']) {
      const toggle = panel.getByRole('button', { name: new RegExp(`^${title}`) });
      await toggle.click();
      assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
      await until(async () => /Not available yet|Nothing here|Order|\+|-|Voucher/.test(await textOf(toggle.locator('xpath=..'))), {
        what: `${title} settled`,
      });
    }
    await panel.getByRole('button', { name: 'Give Points' }).click();
    const dialog = agent.page.getByRole('dialog', { name: 'Give Points' });
    await dialog.getByLabel('Amount').fill('25');
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await until(async () => (await dialog.count()) === 0 || /Not available yet/.test(await textOf(dialog)), { what: 'give points settled' });
    if (await dialog.count()) await dialog.getByRole('button', { name: 'Cancel' }).click();
    await panel.getByRole('button', { name: 'Refresh' }).click();
    await panel.locator('.profile-name', { hasText: 'carol' }).waitFor();
    const errors = agent.problems.filter((p) => /page error/.test(p));
    assert.deepEqual(errors, [], 'no uncaught errors');
    await agent.context.close();
  });
});

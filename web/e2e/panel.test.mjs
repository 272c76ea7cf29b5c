// The customer info panel against the real loyalty and order backend: the spec's
// "Awarding Points While Chatting" and "Checking a Customer's Order During Chat"
// with an agent console and the customer's widget side by side, Reset Balance,
// Refresh, live section updates and the demo data (vouchers, orders, ledger).

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  VIEWPORTS,
  agentToken,
  api,
  expectProblems,
  launchBrowser,
  message,
  newAgent,
  newCustomer,
  postOrderEvent,
  send,
  shot,
  startStack,
  uniqueName,
  watch,
} from './harness.mjs';
import { assertClean, textOf, until } from './util.mjs';

let stack;
let browser;
let token;

before(async () => {
  stack = await startStack();
  browser = await launchBrowser();
  token = await agentToken(stack);
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

const row = (page, username) => page.locator(`.chat-row[data-username="${username}"]`);
const panelOf = (page) => page.locator('.customer-panel');
const points = (page) => textOf(panelOf(page).locator('.points-value'));
const system = (page, text) => page.locator('.msg-system', { has: page.locator('.system-text', { hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }) });
const section = (page, title) => panelOf(page).locator('.section', { has: page.getByRole('button', { name: new RegExp(`^${title}`) }) });

async function expand(page, title) {
  const toggle = panelOf(page).getByRole('button', { name: new RegExp(`^${title}`) });
  if ((await toggle.getAttribute('aria-expanded')) !== 'true') await toggle.click();
  await until(async () => /^(ready|error)$/.test(await section(page, title).getAttribute('data-status')), { what: `${title} loaded` });
  return section(page, title);
}

/** Gives points over REST as another agent would (a fresh Idempotency-Key each time). */
async function award(customer, amount, reason) {
  const r = await api(stack, `/api/customers/${customer}/points`, {
    body: reason ? { amount, reason } : { amount },
    token,
    headers: { 'Idempotency-Key': crypto.randomUUID() },
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

/** Opens a conversation of a customer who wrote first; returns the agent (panel ready). */
async function agentOn(name, opts) {
  const agent = await newAgent(browser, stack.url, opts);
  await row(agent.page, name).click();
  await panelOf(agent.page).locator('.profile-name', { hasText: name }).waitFor();
  await until(async () => /^\d[\d,]*$/.test(await points(agent.page)), { what: 'points shown' });
  return agent;
}

describe('customer info panel (real backend)', () => {
  test('awarding points while chatting: Give Points, the balance updates at once, the system message on both sides, then tell the customer', async () => {
    const name = uniqueName('paula');
    const customer = await newCustomer(browser, stack.url, name);
    await send(customer.page, 'I waited 20 minutes for my latte today.');
    const agent = await agentOn(name);
    // A second agent sees the balance change live (the `points` frame).
    const other = await agentOn(name, { label: 'second agent' });
    await message(agent.page, 'I waited 20 minutes for my latte today.').waitFor();
    assert.equal(await points(agent.page), '0');

    await panelOf(agent.page).getByRole('button', { name: 'Give Points' }).click();
    const dialog = agent.page.getByRole('dialog', { name: 'Give Points' });
    assert.ok(await dialog.getByRole('button', { name: 'Confirm' }).isDisabled(), 'Confirm needs an amount');
    await dialog.getByLabel('Amount').fill('50');
    await dialog.getByLabel('Reason (optional)').fill('Sorry for the wait');
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await dialog.waitFor({ state: 'detached' });
    // Immediately from the answer, not a reload.
    assert.equal(await points(agent.page), '50');
    assert.match(await textOf(panelOf(agent.page).getByRole('status')), /Gave 50 points to/);
    await until(async () => (await points(other.page)) === '50', { what: 'second agent balance' });

    // The conversation says so on both sides: a centred, muted system message.
    const line = '50 points awarded by Demo Agent: Sorry for the wait';
    await system(agent.page, line).waitFor();
    await system(customer.page, line).waitFor();
    await system(other.page, line).waitFor();
    const tx = await expand(agent.page, 'Transactions');
    await until(async () => /\+50\s*Awarded.*→ 50/.test(await textOf(tx.locator('li').first())), { what: 'ledger entry' });
    assert.match(await textOf(tx.locator('li').first()), /Sorry for the wait · by Demo Agent/);

    // Then tell the customer, as the workflow says.
    await send(agent.page, 'I just added 50 bonus points to your account!');
    await message(customer.page, 'I just added 50 bonus points to your account!').waitFor();
    await agent.page.mouse.move(0, 0);
    await customer.page.mouse.move(0, 0);
    await shot(agent.page, 'desktop-panel-points-awarded');
    await shot(customer.page, 'widget-points-awarded');
    assertClean(agent, other, customer);

    // The server's validation messages, word for word; nothing changes.
    await panelOf(agent.page).getByRole('button', { name: 'Give Points' }).click();
    const d2 = agent.page.getByRole('dialog', { name: 'Give Points' });
    const tryAmount = async (v, re) => {
      await d2.getByLabel('Amount').fill(v);
      await d2.getByRole('button', { name: 'Confirm' }).click();
      await until(async () => re.test(await textOf(d2.getByRole('alert'))), { what: `message for ${v}` });
    };
    await tryAmount('2.5', /^Amount must be a whole number$/);
    await tryAmount('-5', /^Amount must be a positive whole number$/);
    await tryAmount('0', /^Amount must be a positive whole number$/);
    await tryAmount('1000000', /^Amount must be at most 100000$/);
    await shot(agent.page, 'desktop-give-points-invalid');
    assert.equal(await points(agent.page), '50');
    const refused = expectProblems(agent, /HTTP 400: POST .*\/points$|console error: Failed to load resource: .* 400/);
    assert.equal(refused.filter((p) => /HTTP 400/.test(p)).length, 4, refused.join('\n'));
    // A refused request does not use up the dialog's Idempotency-Key.
    await d2.getByLabel('Amount').fill('25');
    await d2.getByRole('button', { name: 'Confirm' }).click();
    await d2.waitFor({ state: 'detached' });
    await until(async () => (await points(agent.page)) === '75', { what: 'balance 75' });
    await system(customer.page, '25 points awarded by Demo Agent').waitFor();
    assertClean(agent, other, customer);
    for (const x of [agent, other, customer]) await x.context.close();
  });

  test('Reset Balance asks for confirmation; a zero balance answers with the no-op message', async () => {
    const name = uniqueName('rita');
    const customer = await newCustomer(browser, stack.url, name);
    await send(customer.page, 'Can you check my points?');
    const agent = await agentOn(name);
    await award(name, 40, 'Welcome');
    await until(async () => (await points(agent.page)) === '40', { what: 'balance 40 (live)' });

    const panel = panelOf(agent.page);
    await panel.getByRole('button', { name: 'Reset Balance' }).click();
    let confirm = agent.page.getByRole('dialog', { name: 'Reset Balance' });
    assert.match(await textOf(confirm), /balance \(40\) to 0\? This cannot be undone/);
    await confirm.getByRole('button', { name: 'Cancel' }).click();
    await confirm.waitFor({ state: 'detached' });
    assert.equal(await points(agent.page), '40', 'Cancel changes nothing');

    await panel.getByRole('button', { name: 'Reset Balance' }).click();
    confirm = agent.page.getByRole('dialog', { name: 'Reset Balance' });
    await confirm.getByRole('button', { name: 'Reset to 0' }).click();
    await confirm.waitFor({ state: 'detached' });
    assert.equal(await points(agent.page), '0');
    assert.match(await textOf(panel.getByRole('status')), /balance was reset to 0 \(40 points removed\)/);
    const line = 'Points balance reset to 0 by Demo Agent (40 points removed)';
    await system(agent.page, line).waitFor();
    await system(customer.page, line).waitFor();
    const tx = await expand(agent.page, 'Transactions');
    await until(async () => /^-40\s*Reset/.test(await textOf(tx.locator('li').first())), { what: 'reset entry' });

    // Again, on a zero balance: nothing to reset, said so; no entry, no message.
    await panel.getByRole('button', { name: 'Reset Balance' }).click();
    confirm = agent.page.getByRole('dialog', { name: 'Reset Balance' });
    await confirm.getByRole('button', { name: 'Reset to 0' }).click();
    await confirm.waitFor({ state: 'detached' });
    await until(async () => (await textOf(panel.getByRole('status'))) === 'The balance is already 0: nothing to reset', { what: 'no-op message' });
    await agent.page.mouse.move(0, 0);
    await shot(agent.page, 'desktop-reset-noop');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await agent.page.locator('.msg-system', { hasText: 'Points balance reset' }).count(), 1);
    assert.equal(await tx.locator('li').count(), 2);
    assert.equal(await points(agent.page), '0');
    assertClean(agent, customer);
    for (const x of [agent, customer]) await x.context.close();
  });

  test("checking a customer's order during chat: the card appears, updates live in place on both sides, then moves to Recent Orders", async () => {
    const name = uniqueName('omar');
    const customer = await newCustomer(browser, stack.url, name);
    await send(customer.page, 'I just ordered, when will it be ready?');
    const agent = await agentOn(name);
    await message(agent.page, 'I just ordered, when will it be ready?').waitFor();
    const orderId = `77${Math.floor(Math.random() * 1e6)}`;
    const items = [
      { name: 'Flat white', qty: 2, price: 3.8 },
      { name: 'Almond croissant', qty: 1, price: 3.1 },
    ];
    const t0 = Date.now();
    const placed = await postOrderEvent(stack, { order_id: orderId, customer_id: name, status: 'placed', items, total: 10.7, ts: t0 });

    // The card arrives live on both sides.
    for (const page of [agent.page, customer.page]) {
      const card = page.locator(`.order-card[data-order="${orderId}"]`);
      await card.waitFor();
      assert.equal(await card.getAttribute('data-status'), 'placed');
      assert.equal(await card.locator('xpath=ancestor::div[@data-seq][1]').getAttribute('data-seq'), String(placed.card_seq));
      assert.match(await textOf(card), /2× Flat white/);
      assert.match(await textOf(card.locator('.order-total')), /10\.70/);
    }
    // The panel: Active Orders lists it.
    const active = await expand(agent.page, 'Active Orders');
    await until(async () => /Order #\d+\s*Placed/.test(await textOf(active.locator(`li[data-id="${orderId}"]`))), { what: 'active order listed' });
    assert.match(await textOf(active.locator(`li[data-id="${orderId}"]`)), /2× Flat white, 1× Almond croissant/);
    const recent = await expand(agent.page, 'Recent Orders');
    assert.equal(await recent.locator(`li[data-id="${orderId}"]`).count(), 0);

    // A newer status while the conversation is open: the same card changes in place.
    await postOrderEvent(stack, { order_id: orderId, customer_id: name, status: 'preparing', items, total: 10.7, ts: t0 + 60_000 });
    for (const page of [agent.page, customer.page]) {
      await page.locator(`.order-card[data-order="${orderId}"][data-status="preparing"]`).waitFor();
      assert.equal(await page.locator('.msg-order').count(), 1, 'one card, updated in place');
      assert.deepEqual(
        await page.locator(`.order-card[data-order="${orderId}"] .order-steps li`).evaluateAll((els) => els.map((e) => e.className)),
        ['done', 'done', 'current', '', ''],
      );
      await system(page, `Order #${orderId} is now preparing`).waitFor();
    }
    // The status message is centred and muted.
    const sys = system(agent.page, `Order #${orderId} is now preparing`);
    const box = await sys.locator('.system-text').boundingBox();
    const pane = await agent.page.locator('[data-testid="messages"]').boundingBox();
    assert.ok(Math.abs(box.x + box.width / 2 - (pane.x + pane.width / 2)) < 40, 'system message centred');
    const color = await sys.locator('.system-text').evaluate((el) => getComputedStyle(el).color);
    const textColor = await agent.page.locator('.conv-name').evaluate((el) => getComputedStyle(el).color);
    assert.notEqual(color, textColor, 'system message muted');
    // The open section follows without a Refresh.
    await until(async () => /Preparing/.test(await textOf(active.locator(`li[data-id="${orderId}"]`))), { what: 'active order now preparing' });
    await postOrderEvent(stack, { order_id: orderId, customer_id: name, status: 'ready', items, total: 10.7, ts: t0 + 120_000 });
    await customer.page.locator(`.order-card[data-order="${orderId}"][data-status="ready"]`).waitFor();
    await agent.page.locator(`.order-card[data-order="${orderId}"][data-status="ready"]`).waitFor();
    await system(customer.page, `Order #${orderId} is now ready`).waitFor();
    await agent.page.mouse.move(0, 0);
    await customer.page.mouse.move(0, 0);
    await shot(agent.page, 'desktop-order-live');
    await shot(customer.page, 'widget-order-live');

    // Completed: out of Active Orders, into Recent Orders, live.
    await postOrderEvent(stack, { order_id: orderId, customer_id: name, status: 'completed', items, total: 10.7, ts: t0 + 180_000 });
    await agent.page.locator(`.order-card[data-order="${orderId}"][data-status="completed"]`).waitFor();
    await until(async () => (await active.locator(`li[data-id="${orderId}"]`).count()) === 0, { what: 'gone from Active Orders' });
    await until(async () => /Completed/.test(await textOf(recent.locator(`li[data-id="${orderId}"]`))), { what: 'in Recent Orders' });
    assert.match(await textOf(active), /No orders in progress/);
    await system(agent.page, `Order #${orderId} is now completed`).waitFor();
    // An older event arriving late changes nothing on the card.
    await postOrderEvent(stack, { order_id: orderId, customer_id: name, status: 'accepted', items, total: 10.7, ts: t0 + 30_000 });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await customer.page.locator(`.order-card[data-order="${orderId}"]`).getAttribute('data-status'), 'completed');
    await agent.page.mouse.move(0, 0);
    await shot(agent.page, 'desktop-order-completed');

    // History agrees after a reload: the card shows its latest state, once.
    await customer.page.reload();
    await customer.page.locator(`.order-card[data-order="${orderId}"][data-status="completed"]`).waitFor();
    assert.equal(await customer.page.locator('.msg-order').count(), 1);
    assertClean(agent, customer);
    for (const x of [agent, customer]) await x.context.close();
  });

  test('demo data: balance, vouchers, active and recent orders, transactions; Load more pages the ledger', async () => {
    const agent = await newAgent(browser, stack.url);
    await row(agent.page, 'alice').click();
    const panel = panelOf(agent.page);
    await panel.locator('.profile-name', { hasText: 'alice' }).waitFor();
    await until(async () => (await points(agent.page)) === '85', { what: "alice's 85 points" });
    // Her conversation has the card of order #1042.
    await agent.page.locator('.order-card[data-order="1042"][data-status="preparing"]').waitFor();

    const vouchers = await expand(agent.page, 'Vouchers');
    assert.equal(await vouchers.locator('li').count(), 2);
    assert.match(await textOf(vouchers.locator('li').nth(0)), /Free pastry\s*PASTRY-ALICE · expires/);
    assert.match(await textOf(vouchers.locator('li').nth(1)), /10% off your next order\s*TENOFF-7Q2/);
    assert.equal(await textOf(vouchers.locator('.section-count')), '2');
    const active = await expand(agent.page, 'Active Orders');
    assert.deepEqual(await active.locator('li').evaluateAll((els) => els.map((e) => e.dataset.id)), ['1042']);
    assert.match(await textOf(active.locator('li')), /Order #1042\s*Preparing\s*1× Latte, 1× Banana bread\s*Total €7\.10/);
    const recent = await expand(agent.page, 'Recent Orders');
    assert.deepEqual(await recent.locator('li').evaluateAll((els) => els.map((e) => e.dataset.id)), ['1040', '1036']);
    assert.match(await textOf(recent.locator('li[data-id="1036"]')), /Completed\s*2× Flat white, 1× Croissant/);
    const tx = await expand(agent.page, 'Transactions');
    const entries = await tx.locator('li').allTextContents();
    assert.equal(entries.length, 4);
    assert.match(entries[0], /^\+20\s*Awarded → 85Sorry for the wait · by Demo Agent/);
    assert.match(entries[1], /^-100\s*Spent → 65Free coffee/);
    assert.match(entries[3], /^\+120\s*Earned → 120Order #1036/);
    assert.equal(await tx.getByRole('button', { name: 'Load more' }).count(), 0);
    await agent.page.mouse.move(0, 0);
    await shot(agent.page, 'desktop-customer-panel');
    await panel.evaluate((el) => (el.closest('.col-info').scrollTop = 10_000));
    await shot(agent.page, 'desktop-customer-panel-scrolled');

    // dave: the expired voucher is not listed.
    await row(agent.page, 'dave').click();
    await panel.locator('.profile-name', { hasText: 'dave' }).waitFor();
    await until(async () => (await points(agent.page)) === '550', { what: "dave's 550 points" });
    const dv = await expand(agent.page, 'Vouchers');
    await until(async () => /Free upsize/.test(await textOf(dv)), { what: "dave's vouchers" });
    assert.doesNotMatch(await textOf(dv), /Summer special/);

    // A long ledger comes in pages of 20.
    const name = uniqueName('lena');
    const c = await newCustomer(browser, stack.url, name);
    await send(c.page, 'Hello');
    for (let i = 1; i <= 23; i++) await award(name, i, `Visit ${i}`);
    await row(agent.page, name).click();
    await panel.locator('.profile-name', { hasText: name }).waitFor();
    await until(async () => (await points(agent.page)) === String((23 * 24) / 2), { what: 'balance 276' });
    const lt = await expand(agent.page, 'Transactions');
    await until(async () => (await lt.locator('li').count()) === 20, { what: 'first page' });
    assert.equal(await textOf(lt.locator('.section-count')), '20+');
    await lt.getByRole('button', { name: 'Load more' }).click();
    await until(async () => (await lt.locator('li').count()) === 23, { what: 'second page' });
    assert.equal(await lt.getByRole('button', { name: 'Load more' }).count(), 0);
    const reasons = (await lt.locator('li').allTextContents()).map((t) => t.match(/Visit (\d+)/)[1]);
    assert.deepEqual(reasons, Array.from({ length: 23 }, (_, i) => String(23 - i)), 'newest first, each once');
    assertClean(agent, c);
    for (const x of [agent, c]) await x.context.close();
  });

  test('Refresh reloads the panel; an older points frame never replaces a newer balance', async () => {
    const name = uniqueName('ruth');
    const customer = await newCustomer(browser, stack.url, name);
    await send(customer.page, 'Hi');
    // The agent's socket passes frames through a test proxy that can hold back or
    // repeat `points` frames (as a lost or late frame would).
    const context = await browser.newContext({ viewport: VIEWPORTS.desktop });
    const page = await context.newPage();
    const proxy = { drop: false, seen: [], toPage: null };
    await page.routeWebSocket(/\/ws\?/, (ws) => {
      const server = ws.connectToServer();
      proxy.toPage = (f) => ws.send(JSON.stringify(f));
      ws.onMessage((m) => server.send(m));
      server.onMessage((m) => {
        const f = JSON.parse(m);
        if (f.type === 'points') {
          proxy.seen.push(f);
          if (proxy.drop) return;
        }
        ws.send(m);
      });
    });
    const w = watch(page, 'agent');
    await page.goto(stack.url);
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('link', { name: /^Chat/ }).click();
    await row(page, name).click();
    await until(async () => (await points(page)) === '0', { what: 'balance 0' });
    const tx = await expand(page, 'Transactions');
    assert.match(await textOf(tx), /No transactions yet/);
    const vouchers = await expand(page, 'Vouchers');
    assert.match(await textOf(vouchers), /No active vouchers/);

    // Frames lost: the panel does not know...
    proxy.drop = true;
    await award(name, 30, 'Missed frame');
    await until(() => proxy.seen.length === 1, { what: 'the points frame went by' });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await points(page), '0');
    // ...until Refresh reloads the profile and the open sections.
    const reloads = [];
    page.on('request', (r) => reloads.push(new URL(r.url()).pathname));
    await panelOf(page).getByRole('button', { name: 'Refresh' }).click();
    await until(async () => (await points(page)) === '30', { what: 'balance after Refresh' });
    await until(async () => /\+30\s*Awarded/.test(await textOf(tx)), { what: 'transactions after Refresh' });
    assert.ok(reloads.includes(`/api/customers/${name}`) && reloads.includes(`/api/customers/${name}/vouchers`) && reloads.includes(`/api/customers/${name}/transactions`), reloads.join(' '));

    // Two awards; then the older frame is delivered late: the newer balance stays.
    proxy.drop = false;
    await award(name, 10);
    await until(async () => (await points(page)) === '40', { what: 'balance 40' });
    await award(name, 5);
    await until(async () => (await points(page)) === '45', { what: 'balance 45' });
    const late = proxy.seen.find((f) => f.balance === 40);
    assert.ok(late && typeof late.version === 'number', JSON.stringify(proxy.seen));
    proxy.toPage(late);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await points(page), '45');
    assert.equal(await panelOf(page).locator('[data-testid="points"]').getAttribute('data-version'), String(late.version + 1));
    // Transactions followed the live balance without a Refresh.
    await until(async () => (await tx.locator('li').count()) === 3, { what: 'three entries' });
    assertClean(w, customer);
    await context.close();
    await customer.context.close();
  });

  test('the panel on tablet and phone: info view with real data (screenshots)', async () => {
    for (const [label, viewport] of [
      ['tablet', VIEWPORTS.tablet],
      ['phone', VIEWPORTS.phone],
    ]) {
      const agent = await newAgent(browser, stack.url, { viewport, label });
      await row(agent.page, 'bob').click();
      await agent.page.getByRole('button', { name: 'Customer info' }).click();
      await until(async () => (await points(agent.page)) === '300', { what: "bob's points" });
      const active = await expand(agent.page, 'Active Orders');
      assert.match(await textOf(active), /Order #2001\s*Ready/);
      await expand(agent.page, 'Vouchers');
      await agent.page.mouse.move(0, viewport.height - 1);
      await new Promise((r) => setTimeout(r, 300)); // the chevrons' turn
      await shot(agent.page, `${label}-customer-panel`);
      assertClean(agent);
      await agent.context.close();
    }
  });
});

// Losing and regaining the connection: the console says so, resumes, shows what it
// missed without a reload, and sends what was typed offline exactly once.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { message, newAgent, newCustomer, postOrderEvent, send, uniqueName, withStack } from './harness.mjs';
import { assertClean, textOf, until } from './util.mjs';

/** This file's stack and browser (started before its tests). */
const env = withStack();

const row = (page, username) => page.locator(`.chat-row[data-username="${username}"]`);
const banner = (page) => page.locator('[data-testid="connection-banner"]');

async function countText(page, text) {
  return page.locator('.msg-text', { hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }).count();
}

describe('connection', () => {
  test('offline: reconnecting state, outbox marked not sent, missed messages shown after reconnect, sent once', async () => {
    const agent = await newAgent(env.browser, env.stack.url);
    const name = uniqueName('olga');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Before the outage');
    await row(agent.page, name).click();
    await message(agent.page, 'Before the outage').waitFor();

    // Requests fail on purpose while the network is off.
    agent.pause();
    await agent.context.setOffline(true);
    await banner(agent.page).waitFor();
    assert.match(await textOf(banner(agent.page)), /offline|Reconnecting/i);

    // The customer goes on talking meanwhile.
    await send(customer.page, 'Sent while the agent was offline');
    await send(customer.page, 'And a second one');
    await until(async () => (await customer.page.locator('[data-outbox]').count()) === 0, { what: 'customer messages acknowledged' });

    // Typed offline: waits in the outbox, marked as not sent.
    await send(agent.page, 'Typed while offline');
    const pending = agent.page.locator('[data-outbox]', { hasText: 'Typed while offline' });
    await pending.waitFor();
    assert.match(await textOf(pending), /Not sent/);
    assert.equal(await pending.locator('.read-status').getAttribute('data-status'), 'queued');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await countText(customer.page, 'Typed while offline'), 0, 'nothing leaves while offline');

    await agent.context.setOffline(false);
    await banner(agent.page).waitFor({ state: 'detached', timeout: 20_000 });
    agent.resume();

    // Missed messages appear without a reload, the outbox drains, exactly once on both sides.
    await message(agent.page, 'Sent while the agent was offline').waitFor();
    await message(agent.page, 'And a second one').waitFor();
    await message(customer.page, 'Typed while offline').waitFor();
    await until(async () => (await agent.page.locator('[data-outbox]').count()) === 0, { what: 'outbox drained' });
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await countText(customer.page, 'Typed while offline'), 1);
    assert.equal(await countText(agent.page, 'Typed while offline'), 1);
    assert.equal(await countText(agent.page, 'Sent while the agent was offline'), 1);
    // Order is kept: the missed customer messages come before the agent's late one.
    const texts = await agent.page.locator('.msg-text').allTextContents();
    assert.ok(texts.indexOf('Before the outage') < texts.indexOf('Sent while the agent was offline'));
    assertClean(agent, customer);
    await agent.context.close();
    await customer.context.close();
  });

  test('server closes the socket: the client resumes first thing and replays what it missed', async () => {
    const name = uniqueName('sven');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'First message');
    await message(customer.page, 'First message').waitFor();

    const context = await env.browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const sockets = [];
    let refuse = false;
    await page.routeWebSocket(/\/ws\?/, (ws) => {
      const entry = { frames: [], ws };
      sockets.push(entry);
      if (refuse) {
        ws.close({ code: 1001, reason: 'going away' });
        return;
      }
      const server = ws.connectToServer();
      ws.onMessage((m) => {
        entry.frames.push(JSON.parse(m));
        server.send(m);
      });
      server.onMessage((m) => ws.send(m));
      server.onClose((code, reason) => ws.close({ code, reason }));
      ws.onClose((code, reason) => server.close({ code, reason }));
    });
    const { watch } = await import('./harness.mjs');
    const w = watch(page, 'agent');
    await page.goto(env.stack.url);
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('link', { name: /^Chat/ }).click();
    await row(page, name).click();
    await message(page, 'First message').waitFor();

    // Drop the socket and refuse new ones for a moment.
    refuse = true;
    const live = sockets.filter((s) => s.frames.length > 0).at(-1);
    live.ws.close({ code: 1001, reason: 'going away' });
    await banner(page).waitFor();
    assert.match(await textOf(banner(page)), /Reconnecting/);
    await send(customer.page, 'Missed while disconnected');
    await until(async () => (await customer.page.locator('[data-outbox]').count()) === 0, { what: 'customer ack' });
    await new Promise((r) => setTimeout(r, 400));
    refuse = false;

    await banner(page).waitFor({ state: 'detached', timeout: 20_000 });
    await message(page, 'Missed while disconnected').waitFor();
    const last = sockets.at(-1);
    assert.equal(last.frames[0]?.type, 'resume', 'resume is the first frame after reconnecting');
    assert.ok(last.frames[0].positions[name] >= 1, `resume names the open conversation: ${JSON.stringify(last.frames[0])}`);
    assert.equal(await countText(page, 'Missed while disconnected'), 1);
    // The browser logs refused WebSocket handshakes as errors; only the mocked ones are expected.
    const unexpected = w.problems.filter((p) => !/WebSocket/.test(p));
    assert.deepEqual(unexpected, []);
    assertClean(customer);
    await context.close();
    await customer.context.close();
  });

  test('order card updates are positioned: the resume names them, a missed update is replayed in place on both sides', async () => {
    const name = uniqueName('ozzy');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Where is my order?');
    await message(customer.page, 'Where is my order?').waitFor();

    const context = await env.browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const sockets = [];
    let refuse = false;
    await page.routeWebSocket(/\/ws\?/, (ws) => {
      const entry = { frames: [], received: [], ws };
      sockets.push(entry);
      if (refuse) {
        ws.close({ code: 1001, reason: 'going away' });
        return;
      }
      const server = ws.connectToServer();
      ws.onMessage((m) => {
        entry.frames.push(JSON.parse(m));
        server.send(m);
      });
      server.onMessage((m) => {
        entry.received.push(JSON.parse(m));
        ws.send(m);
      });
      server.onClose((code, reason) => ws.close({ code, reason }));
      ws.onClose((code, reason) => server.close({ code, reason }));
    });
    const { watch } = await import('./harness.mjs');
    const w = watch(page, 'agent');
    await page.goto(env.stack.url);
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('link', { name: /^Chat/ }).click();
    await row(page, name).click();
    await message(page, 'Where is my order?').waitFor();

    const id = `r${Date.now() % 1e7}`;
    const t0 = Date.now();
    const items = [{ name: 'Chai', qty: 1, price: 3.4 }];
    await postOrderEvent(env.stack, { order_id: id, customer_id: name, status: 'preparing', items, total: 3.4, ts: t0 });
    // Same status, one more item: only the card changes (an `order` frame, no status message).
    const more = [...items, { name: 'Scone', qty: 1, price: 2.6 }];
    await postOrderEvent(env.stack, { order_id: id, customer_id: name, status: 'preparing', items: more, total: 6, ts: t0 + 1000 });
    await until(async () => /1× Scone/.test(await textOf(page.locator(`.order-card[data-order="${id}"]`))), { what: 'card updated live' });
    const live = sockets.filter((s) => s.frames.length > 0).at(-1);
    const update = live.received.find((f) => f.type === 'order' && f.conversation === name);
    assert.ok(update && typeof update.pos === 'number', 'an order frame arrived');
    const lastPos = Math.max(...live.received.filter((f) => f.conversation === name && typeof f.pos === 'number').map((f) => f.pos));
    assert.equal(lastPos, update.pos, 'the card update is the latest event held');

    // Both sides lose the connection; the order moves on meanwhile.
    refuse = true;
    live.ws.close({ code: 1001, reason: 'going away' });
    customer.pause();
    await customer.context.setOffline(true);
    await banner(page).waitFor();
    await postOrderEvent(env.stack, { order_id: id, customer_id: name, status: 'ready', items: more, total: 6, ts: t0 + 2000 });
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(await page.locator(`.order-card[data-order="${id}"]`).getAttribute('data-status'), 'preparing');
    refuse = false;
    await customer.context.setOffline(false);

    await banner(page).waitFor({ state: 'detached', timeout: 20_000 });
    const last = sockets.at(-1);
    assert.equal(last.frames[0]?.type, 'resume');
    assert.equal(last.frames[0].positions[name], update.pos, `resume holds the card update's position: ${JSON.stringify(last.frames[0])}`);
    for (const p of [page, customer.page]) {
      await p.locator(`.order-card[data-order="${id}"][data-status="ready"]`).waitFor({ timeout: 20_000 });
      await p.locator('.msg-system', { hasText: `Order #${id} is now ready` }).waitFor();
      assert.equal(await p.locator('.msg-order').count(), 1);
    }
    const replayed = last.received.filter((f) => f.conversation === name && (f.type === 'order' || f.type === 'replay'));
    assert.ok(replayed.some((f) => f.type === 'order'), `the update came by replay: ${JSON.stringify(replayed)}`);
    assert.ok(replayed.some((f) => f.type === 'replay' && f.complete), 'replay complete');
    await banner(customer.page).waitFor({ state: 'detached', timeout: 20_000 });
    customer.resume();
    const unexpected = w.problems.filter((p) => !/WebSocket/.test(p));
    assert.deepEqual(unexpected, []);
    await context.close();
    await customer.context.close();
  });

  test('a new epoch (Redis lost its state): the console drops its positions and reloads', async () => {
    const name = uniqueName('edna');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Before the epoch change');
    await message(customer.page, 'Before the epoch change').waitFor();

    const context = await env.browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const sockets = [];
    await page.routeWebSocket(/\/ws\?/, (ws) => {
      const entry = { frames: [], received: [], ws };
      sockets.push(entry);
      const server = ws.connectToServer();
      ws.onMessage((m) => {
        entry.frames.push(JSON.parse(m));
        server.send(m);
      });
      server.onMessage((m) => {
        entry.received.push(JSON.parse(m));
        ws.send(m);
      });
      server.onClose((code, reason) => ws.close({ code, reason }));
      ws.onClose((code, reason) => server.close({ code, reason }));
    });
    const { watch } = await import('./harness.mjs');
    const w = watch(page, 'agent');
    await page.goto(env.stack.url);
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('link', { name: /^Chat/ }).click();
    await row(page, name).click();
    await message(page, 'Before the epoch change').waitFor();
    const oldEpoch = sockets.at(-1).received.find((f) => f.type === 'hello').epoch;

    // Only the epoch key goes (sessions must survive for the test to log in again).
    const del = spawnSync('redis-cli', ['DEL', `${env.stack.prefix}epoch`], { encoding: 'utf8' });
    assert.equal(del.status, 0, del.stderr);
    const reload = page.waitForRequest((r) => r.url().includes(`/api/conversations/${name}/messages`));
    sockets.at(-1).ws.close({ code: 1001, reason: 'going away' });

    await reload;
    const last = sockets.at(-1);
    await until(() => last.received.some((f) => f.type === 'hello'), { what: 'hello' });
    assert.equal(last.frames[0].type, 'resume');
    assert.equal(last.frames[0].epoch, oldEpoch, 'resume names the epoch its positions came from');
    assert.notEqual(last.received.find((f) => f.type === 'hello').epoch, oldEpoch);
    await banner(page).waitFor({ state: 'detached', timeout: 20_000 });
    await message(page, 'Before the epoch change').waitFor();
    assert.equal(await countText(page, 'Before the epoch change'), 1);
    await send(customer.page, 'After the epoch change');
    await message(page, 'After the epoch change').waitFor();
    assert.equal(await countText(page, 'After the epoch change'), 1);
    assertClean(w, customer);
    await context.close();
    await customer.context.close();
  });

  test('a failed send shows Retry; retrying reuses the client_id and the message arrives once', async () => {
    const name = uniqueName('fay');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Hi there');

    const context = await env.browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const sends = [];
    let failNext = true;
    await page.routeWebSocket(/\/ws\?/, (ws) => {
      const server = ws.connectToServer();
      ws.onMessage((m) => {
        const f = JSON.parse(m);
        if (f.type === 'send' && f.text === 'This one fails first') {
          sends.push(f);
          if (failNext) {
            failNext = false;
            ws.send(JSON.stringify({ type: 'error', rid: f.rid, code: 'unavailable', message: 'Simulated failure' }));
            return;
          }
        }
        server.send(m);
      });
      server.onMessage((m) => ws.send(m));
    });
    const { watch } = await import('./harness.mjs');
    const w = watch(page, 'agent');
    await page.goto(env.stack.url);
    await page.getByLabel('Username').fill('demo');
    await page.getByLabel('Password').fill('demo');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('link', { name: /^Chat/ }).click();
    await row(page, name).click();
    await message(page, 'Hi there').waitFor();

    await send(page, 'This one fails first');
    const failed = page.locator('[data-outbox="failed"]');
    await failed.waitFor();
    assert.match(await textOf(failed), /Not sent: Simulated failure/);
    await failed.getByRole('button', { name: 'Retry' }).click();
    await message(customer.page, 'This one fails first').waitFor();
    await until(async () => (await page.locator('[data-outbox]').count()) === 0, { what: 'outbox drained' });
    assert.equal(sends.length, 2);
    assert.equal(sends[0].client_id, sends[1].client_id, 'same client_id on retry');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await countText(customer.page, 'This one fails first'), 1);
    assert.equal(await countText(page, 'This one fails first'), 1);
    assertClean(w, customer);
    await context.close();
    await customer.context.close();
  });
});

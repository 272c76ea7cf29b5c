// The customer panel when the external loyalty service is down: the gateway and
// worker point at a loyalty URL nobody listens on (`CHAT_LOYALTY_URL`), so the
// profile comes with `points: null, points_unavailable: true`, the points actions
// answer 503 and the loyalty sections fail, while orders (kept by the chat itself)
// keep working. The panel must say so and never crash.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { api, agentToken, expectProblems, launchBrowser, newAgent, newCustomer, postOrderEvent, send, shot, startStack, uniqueName } from './harness.mjs';
import { assertClean, textOf, until } from './util.mjs';

let stack;
let browser;

/** A local port with nothing listening on it (connections are refused at once). */
async function deadPort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

before(async () => {
  const port = await deadPort();
  // No demo data: seeding writes to the loyalty service.
  stack = await startStack({ env: { CHAT_LOYALTY_URL: `http://127.0.0.1:${port}/v1`, CHAT_DEMO_DATA: '0', CHAT_LOYALTY_TIMEOUT_MS: '1000' } });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

const row = (page, username) => page.locator(`.chat-row[data-username="${username}"]`);

describe('customer info panel, loyalty service down', () => {
  test('points show as unavailable; actions and loyalty sections report it; orders still work', async () => {
    const name = uniqueName('uma');
    const customer = await newCustomer(browser, stack.url, name);
    await send(customer.page, 'How many points do I have?');
    const token = await agentToken(stack);
    const profile = await api(stack, `/api/customers/${name}`, { token });
    assert.equal(profile.status, 200);
    assert.equal(profile.body.points, null);
    assert.equal(profile.body.points_unavailable, true);

    const agent = await newAgent(browser, stack.url);
    await row(agent.page, name).click();
    const panel = agent.page.locator('.customer-panel');
    await panel.locator('.profile-name', { hasText: name }).waitFor();
    await until(async () => (await textOf(panel.locator('.points-value'))) === 'Unavailable', { what: 'points unavailable' });
    assert.match(await textOf(panel.locator('[data-testid="points"]')), /The loyalty service is not answering/);
    assertClean(agent, customer);

    // Give Points: 503, said in the dialog; nothing posted in the conversation.
    await panel.getByRole('button', { name: 'Give Points' }).click();
    const dialog = agent.page.getByRole('dialog', { name: 'Give Points' });
    await dialog.getByLabel('Amount').fill('10');
    await dialog.getByRole('button', { name: 'Confirm' }).click();
    await until(async () => /points service is not answering right now/.test(await textOf(dialog.getByRole('alert'))), { what: 'give points error' });
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await panel.getByRole('button', { name: 'Reset Balance' }).click();
    const confirm = agent.page.getByRole('dialog', { name: 'Reset Balance' });
    assert.match(await textOf(confirm), /points balance to 0\?/);
    await confirm.getByRole('button', { name: 'Reset to 0' }).click();
    await until(async () => /points service is not answering right now/.test(await textOf(confirm.getByRole('alert'))), { what: 'reset error' });
    await confirm.getByRole('button', { name: 'Cancel' }).click();
    expectProblems(agent, /HTTP 503: POST .*\/points(\/reset)?$|console error: Failed to load resource: .* 503/);
    assert.equal(await agent.page.locator('.msg-system').count(), 0);

    // Loyalty sections: an error with Try again; orders come from the chat's own store.
    for (const title of ['Vouchers', 'Transactions']) {
      await panel.getByRole('button', { name: new RegExp(`^${title}`) }).click();
      const sec = panel.locator('.section.open', { hasText: title });
      await until(async () => /The loyalty service is not answering right now\.\s*Try again/.test(await textOf(sec)), { what: `${title} error` });
    }
    expectProblems(agent, /HTTP 503: GET .*\/(vouchers|transactions)$|console error: Failed to load resource: .* 503/);
    const orderId = `u${Date.now() % 1e6}`;
    await postOrderEvent(stack, { order_id: orderId, customer_id: name, status: 'accepted', items: [{ name: 'Mocha', qty: 1, price: 4.2 }], total: 4.2 });
    await agent.page.locator(`.order-card[data-order="${orderId}"][data-status="accepted"]`).waitFor();
    await customer.page.locator(`.order-card[data-order="${orderId}"]`).waitFor();
    await panel.getByRole('button', { name: /^Active Orders/ }).click();
    await until(async () => /Order #u\d+\s*Accepted/.test(await textOf(panel.locator('.section.open', { hasText: 'Active Orders' }))), { what: 'active order' });
    await panel.getByRole('button', { name: 'Refresh' }).click();
    // Refresh asks the loyalty service again (the open sections too).
    await until(() => agent.problems.some((p) => /HTTP 503: GET .*\/vouchers$/.test(p)) && agent.problems.some((p) => /HTTP 503: GET .*\/transactions$/.test(p)), {
      what: 'sections reloaded',
    });
    await until(async () => (await textOf(panel.getByRole('button', { name: /^Refresh/ }))) === 'Refresh', { what: 'refresh done' });
    assert.equal(await textOf(panel.locator('.points-value')), 'Unavailable');
    expectProblems(agent, /HTTP 503: GET .*\/(vouchers|transactions)$|console error: Failed to load resource: .* 503/);
    await agent.page.mouse.move(0, 0);
    await shot(agent.page, 'desktop-panel-loyalty-down');
    assertClean(agent, customer);
    for (const x of [agent, customer]) await x.context.close();
  });
});

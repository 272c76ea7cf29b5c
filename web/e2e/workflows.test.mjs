// The spec's "Common Workflows", walked with an agent console and a customer widget
// side by side against the real gateway and worker.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { message, newAgent, newCustomer, send, uniqueName, withStack } from './harness.mjs';
import { assertClean, textOf, until } from './util.mjs';

/** This file's stack and browser (started before its tests). */
const env = withStack();

const row = (page, username) => page.locator(`.chat-row[data-username="${username}"]`);

describe('common workflows', () => {
  test('responding to a customer question: unread badge, open, reply, read status reaches seen', async () => {
    const agent = await newAgent(env.browser, env.stack.url);
    const total = agent.page.locator('[data-testid="total-count"]');
    await until(async () => /^\d/.test(await textOf(total)), { what: 'total count' });
    const before = Number((await textOf(total)).replace(/\D/g, ''));
    const name = uniqueName('quinn');
    const customer = await newCustomer(env.browser, env.stack.url, name);

    await send(customer.page, 'Hello, is my order on the way?');
    await send(customer.page, 'It was order 77.');
    await message(customer.page, 'It was order 77.').waitFor();

    // The new conversation appears live at the top of the list with its unread badge.
    const r = row(agent.page, name);
    await r.waitFor();
    await until(async () => (await textOf(r.locator('[data-testid="unread-badge"]'))) === '2', { what: 'unread badge 2' });
    assert.equal(await agent.page.locator('.chat-row').first().getAttribute('data-username'), name, 'new conversation at the top');
    assert.match(await textOf(r.locator('.row-preview')), /order 77/);
    await until(async () => Number((await textOf(total)).replace(/\D/g, '')) === before + 1, { what: 'total count + 1' });

    await r.click();
    await message(agent.page, 'Hello, is my order on the way?').waitFor();
    assert.equal(await agent.page.locator('.conv-name').textContent(), name);
    // Opening it marks it seen: the badge goes away.
    await until(async () => (await r.locator('[data-testid="unread-badge"]').count()) === 0, { what: 'badge cleared' });

    await send(agent.page, 'Yes! It left the shop five minutes ago.');
    const mine = message(agent.page, 'Yes! It left the shop five minutes ago.');
    await mine.waitFor();
    assert.ok(await mine.evaluate((el) => el.classList.contains('msg-own')), 'staff message on the right');

    // The customer sees it live; their open widget reports delivered and seen.
    await message(customer.page, 'Yes! It left the shop five minutes ago.').waitFor();
    await until(async () => (await mine.locator('.read-status').getAttribute('data-status')) === 'seen', {
      what: 'read status seen',
      timeout: 15_000,
    });
    assertClean(agent, customer);
    await agent.context.close();
    await customer.context.close();
  });

  test('read status: single check sent, double check delivered, filled double check seen', async () => {
    const agent = await newAgent(env.browser, env.stack.url);
    const name = uniqueName('vera');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Ping');
    await row(agent.page, name).click();
    await message(agent.page, 'Ping').waitFor();

    // The customer's tab goes to the background: messages arrive (delivered) but are not seen.
    await customer.page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await customer.context.setOffline(true);
    customer.pause();
    await send(agent.page, 'Are you still there?');
    const mine = message(agent.page, 'Are you still there?');
    await mine.waitFor();
    await until(async () => (await mine.locator('.read-status').getAttribute('data-status')) === 'sent', { what: 'single check' });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await mine.locator('.read-status').getAttribute('data-status'), 'sent', 'not delivered while the customer is offline');

    await customer.context.setOffline(false);
    await message(customer.page, 'Are you still there?').waitFor({ timeout: 20_000 });
    customer.resume();
    await until(async () => (await mine.locator('.read-status').getAttribute('data-status')) === 'delivered', { what: 'double check' });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await mine.locator('.read-status').getAttribute('data-status'), 'delivered', 'not seen while in the background');

    await customer.page.evaluate(() => {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'visible' });
      document.dispatchEvent(new Event('visibilitychange'));
    });
    await until(async () => (await mine.locator('.read-status').getAttribute('data-status')) === 'seen', { what: 'filled double check' });
    assertClean(agent, customer);
    await agent.context.close();
    await customer.context.close();
  });

  test('finding a specific conversation by username', async () => {
    const name = uniqueName('zora');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Looking for help with my voucher');
    await message(customer.page, 'Looking for help with my voucher').waitFor();
    const agent = await newAgent(env.browser, env.stack.url);
    await row(agent.page, name).waitFor();

    const search = agent.page.getByLabel('Search by username');
    await search.fill(name.slice(0, 6));
    await until(async () => {
      const names = await agent.page.locator('.chat-row').evaluateAll((els) => els.map((e) => e.getAttribute('data-username')));
      return names.length > 0 && names.every((n) => n.startsWith(name.slice(0, 6))) && names.includes(name);
    }, { what: 'list filtered by username' });
    // Demo customers do not match.
    assert.equal(await row(agent.page, 'alice').count(), 0);
    await row(agent.page, name).click();
    await message(agent.page, 'Looking for help with my voucher').waitFor();

    await search.fill('');
    await row(agent.page, 'alice').waitFor();
    assertClean(agent, customer);
    await agent.context.close();
    await customer.context.close();
  });

  test('reviewing only unread conversations', async () => {
    const agent = await newAgent(env.browser, env.stack.url);
    const readName = uniqueName('rita');
    const reader = await newCustomer(env.browser, env.stack.url, readName);
    await send(reader.page, 'Already answered question');
    await row(agent.page, readName).click();
    await message(agent.page, 'Already answered question').waitFor();
    await until(async () => (await row(agent.page, readName).locator('[data-testid="unread-badge"]').count()) === 0, { what: 'read' });
    await agent.page.keyboard.press('Escape'); // close the conversation

    const name = uniqueName('ursula');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Anyone there?');
    await row(agent.page, name).waitFor();
    await until(async () => (await row(agent.page, name).locator('[data-testid="unread-badge"]').count()) === 1, { what: 'badge' });

    await agent.page.getByText('Show unread only').click();
    await until(async () => {
      const rows = agent.page.locator('.chat-row');
      const n = await rows.count();
      if (n === 0) return false;
      const badges = await agent.page.locator('.chat-row [data-testid="unread-badge"]').count();
      return badges === n && (await row(agent.page, name).count()) === 1;
    }, { what: 'only unread rows' });
    assert.equal(await row(agent.page, readName).count(), 0, 'a read conversation is filtered out');

    // Work through it: open, it stays while open, badge clears.
    await row(agent.page, name).click();
    await message(agent.page, 'Anyone there?').waitFor();
    await until(async () => (await row(agent.page, name).locator('[data-testid="unread-badge"]').count()) === 0, { what: 'badge cleared' });
    assert.equal(await row(agent.page, name).count(), 1, 'the open conversation stays in the filtered list');

    await agent.page.getByText('Show unread only').click();
    await row(agent.page, readName).waitFor();
    assertClean(agent, customer, reader);
    for (const x of [agent, customer, reader]) await x.context.close();
  });

  test('reply, edit, delete and react update live on both sides', async () => {
    const agent = await newAgent(env.browser, env.stack.url);
    const name = uniqueName('rhea');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Can I change my pickup time?');
    await send(customer.page, 'Typo here: tomorow');
    await row(agent.page, name).click();
    const question = message(agent.page, 'Can I change my pickup time?');
    await question.waitFor();

    // Reply quoting the customer's message.
    await question.hover();
    await question.getByRole('button', { name: 'Reply' }).click();
    await agent.page.getByText('Replying to').waitFor();
    await send(agent.page, 'Sure, to what time?');
    const reply = message(customer.page, 'Sure, to what time?');
    await reply.waitFor();
    assert.match(await textOf(reply.locator('.quote')), /Can I change my pickup time\?/);
    assert.match(await textOf(message(agent.page, 'Sure, to what time?').locator('.quote')), /pickup time/);

    // Clicking the quote scrolls to the original and highlights it.
    await reply.locator('.quote').click();
    await until(() => message(customer.page, 'Can I change my pickup time?').evaluate((el) => el.classList.contains('highlight')), { what: 'highlight' });

    // Agent edits its own message: the customer sees the new text and the label.
    const staffMsg = message(agent.page, 'Sure, to what time?');
    await staffMsg.hover();
    await staffMsg.getByRole('button', { name: 'Edit' }).click();
    await agent.page.getByText('Editing message').waitFor();
    const box = agent.page.getByLabel('Message', { exact: true });
    // Edit mode loads the message into the box after the click renders; type only then.
    await until(async () => (await box.inputValue()) === 'Sure, to what time?', { what: 'edit box loaded' });
    await box.fill('Sure, what time suits you?');
    await box.press('Enter');
    const edited = message(customer.page, 'Sure, what time suits you?');
    await edited.waitFor();
    assert.equal(await textOf(edited.locator('.edited')), 'edited');
    await message(agent.page, 'Sure, what time suits you?').locator('.edited').waitFor();

    // Customer messages have no Edit/Delete for the agent.
    await question.hover();
    assert.equal(await question.getByRole('button', { name: 'Edit' }).count(), 0);
    assert.equal(await question.getByRole('button', { name: 'Delete' }).count(), 0);

    // The customer edits and deletes their own messages.
    const typo = message(customer.page, 'Typo here: tomorow');
    await typo.hover();
    await typo.getByRole('button', { name: 'Edit' }).click();
    await customer.page.getByText('Editing message').waitFor();
    const cbox = customer.page.getByLabel('Message', { exact: true });
    await until(async () => (await cbox.inputValue()) === 'Typo here: tomorow', { what: 'edit box loaded' });
    await cbox.fill('Typo here: tomorrow');
    await cbox.press('Enter');
    await message(agent.page, 'Typo here: tomorrow').locator('.edited').waitFor();
    const fixed = message(customer.page, 'Typo here: tomorrow');
    await fixed.hover();
    await fixed.getByRole('button', { name: 'Delete' }).click();
    await until(async () => (await message(agent.page, 'Typo here: tomorrow').count()) === 0, { what: 'deleted on agent side' });
    await agent.page.getByText('This message was deleted').first().waitFor();

    // React both ways.
    await question.hover();
    await question.getByRole('button', { name: 'React' }).click();
    await agent.page.getByRole('menuitemcheckbox', { name: 'thumbs up' }).click();
    const cq = message(customer.page, 'Can I change my pickup time?');
    await cq.locator('.chip[data-emoji="thumbs_up"]').waitFor();
    assert.match(await textOf(cq.locator('.chip[data-emoji="thumbs_up"]')), /1/);

    const cStaff = message(customer.page, 'Sure, what time suits you?');
    await cStaff.hover();
    await cStaff.getByRole('button', { name: 'React' }).click();
    await customer.page.getByRole('menuitemcheckbox', { name: 'fire' }).click();
    await message(agent.page, 'Sure, what time suits you?').locator('.chip[data-emoji="fire"]').waitFor();

    // Toggling a reaction off removes the chip on both sides.
    await cq.locator('.chip[data-emoji="thumbs_up"]').waitFor();
    await question.locator('.chip[data-emoji="thumbs_up"]').click();
    await until(async () => (await cq.locator('.chip[data-emoji="thumbs_up"]').count()) === 0, { what: 'reaction removed' });

    // The agent deletes its own message.
    const agentMsg = message(agent.page, 'Sure, what time suits you?');
    await agentMsg.hover();
    await agentMsg.getByRole('button', { name: 'Delete' }).click();
    await until(async () => (await message(customer.page, 'Sure, what time suits you?').count()) === 0, { what: 'deleted on customer side' });
    assertClean(agent, customer);
    await agent.context.close();
    await customer.context.close();
  });

  test('typing indicators, both directions', async () => {
    const agent = await newAgent(env.browser, env.stack.url);
    const name = uniqueName('tess');
    const customer = await newCustomer(env.browser, env.stack.url, name);
    await send(customer.page, 'Quick question');
    await row(agent.page, name).click();
    await message(agent.page, 'Quick question').waitFor();

    await customer.page.getByLabel('Message', { exact: true }).pressSequentially('I wanted to ask', { delay: 30 });
    const ind = agent.page.locator('[data-testid="typing"]');
    await ind.waitFor({ timeout: 5000 });
    assert.match(await textOf(ind), new RegExp(`${name} is typing`));
    // It goes away by itself once the customer stops.
    await ind.waitFor({ state: 'detached', timeout: 12_000 });

    await agent.page.getByLabel('Message', { exact: true }).pressSequentially('Go ahead', { delay: 30 });
    await customer.page.locator('[data-testid="typing"]').waitFor({ timeout: 5000 });
    assertClean(agent, customer);
    await agent.context.close();
    await customer.context.close();
  });
});

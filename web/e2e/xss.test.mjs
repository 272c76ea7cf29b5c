// Message text is stored and relayed as text and rendered as text: HTML and
// script payloads from a customer show up literally on both sides and
// nothing executes (checked in Chromium).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { message, newAgent, newCustomer, send, uniqueName, withStack } from './harness.mjs';
import { assertClean, until } from './util.mjs';

/** This file's stack and browser (started before its tests). */
const env = withStack();

const PAYLOADS = [
  '<img src=x onerror="window.__xss=1">',
  '<script>window.__xss=2</script>',
  '<a href="javascript:window.__xss=3">click me</a>',
  '<svg onload="window.__xss=4"></svg>',
  '"><iframe srcdoc="<script>parent.__xss=5</script>"></iframe>',
  '{{constructor.constructor(\'window.__xss=6\')()}}',
];

test('HTML and script payloads render as text and never execute', async () => {
  const agent = await newAgent(env.browser, env.stack.url);
  const name = uniqueName('xss');
  const customer = await newCustomer(env.browser, env.stack.url, name);
  for (const p of PAYLOADS) {
    await send(customer.page, p);
    await message(customer.page, p).waitFor();
  }
  const row = agent.page.locator(`.chat-row[data-username="${name}"]`);
  await row.waitFor();
  await row.click();
  for (const p of PAYLOADS) {
    const m = message(agent.page, p);
    await m.waitFor();
    // Exactly the typed characters, as text.
    assert.equal(await m.locator('.msg-text').textContent(), p);
  }
  // Hover actions: quote one in a reply (the quote is rendered too).
  await send(agent.page, 'Please do not send code here.');
  await message(customer.page, 'Please do not send code here.').waitFor();
  // Give any handler a moment to fire, then check that nothing ran or was created.
  await agent.page.waitForTimeout(500);
  for (const page of [agent.page, customer.page]) {
    assert.equal(await page.evaluate(() => window.__xss), undefined, 'a payload executed');
    const injected = await page.evaluate(
      () => document.querySelectorAll('.msg-text img, .msg-text script, .msg-text svg, .msg-text iframe, .msg-text a[href^="javascript"]').length,
    );
    assert.equal(injected, 0, 'payload markup became elements');
  }
  // The chat-list preview is text too.
  await until(async () => ((await row.locator('.row-preview').textContent()) ?? '').includes('Please do not'), { what: 'preview' });
  assertClean(agent, customer);
});

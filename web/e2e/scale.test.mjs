// The chat list with 100,000 conversations: the first page shows fast, only a
// screenful of rows is ever in the DOM, scrolling pulls cursor pages, search is
// instant, and live updates still land at the top.
//
// The rows are written straight into this run's Redis keys by the load tool's
// seeder (`loadtest chatlist --seed-only`, which writes them with the one row
// codec, schema::chatlist): posting 100,000 conversations through the gateway
// would take minutes on this machine. Seeded conversation j is `seed<j>`
// with username `customer_<j>` (6 digits), newer with j; every tenth has
// j % 250 + 1 unread.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { binDir, launchBrowser, message, newAgent, newCustomer, send, startStack, uniqueName } from './harness.mjs';
import { assertClean, textOf, until } from './util.mjs';

const N = Number(process.env.E2E_SCALE_ROWS ?? 100_000);
let stack;
let browser;

function seedRows(prefix, n) {
  const r = spawnSync(join(binDir, 'loadtest'), [
    'chatlist', '--seed-only', '--redis-url', process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    '--key-prefix', prefix, '--count', String(n), '--gateway', 'unused',
  ], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`loadtest chatlist --seed-only failed: ${r.stderr}`);
}

before(async () => {
  stack = await startStack();
  seedRows(stack.prefix, N);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await stack?.stop();
});

describe(`chat list with ${N.toLocaleString('en')} conversations`, () => {
  test('first page fast, virtualised rows, cursor pages on scroll, search, live updates', async () => {
    const started = Date.now();
    const agent = await newAgent(browser, stack.url);
    await agent.page.locator('.chat-row').first().waitFor();
    const firstPaint = Date.now() - started;
    const total = Number((await textOf(agent.page.locator('[data-testid="total-count"]'))).replace(/\D/g, ''));
    assert.ok(total >= N, `total ${total} counts all conversations`);

    // Scroll far down: pages load by cursor, the DOM keeps only what is on screen.
    const list = agent.page.locator('.chat-rows');
    for (let i = 0; i < 12; i++) {
      await list.evaluate((el) => (el.scrollTop = el.scrollHeight));
      await agent.page.waitForTimeout(150);
    }
    await until(async () => (await agent.page.locator('.chat-row').count()) > 0, { what: 'rows after scrolling' });
    const inDom = await agent.page.locator('.chat-row').count();
    assert.ok(inDom < 40, `only visible rows are rendered (${inDom})`);
    const loaded = await list.evaluate((el) => Math.round(el.scrollHeight / 72));
    assert.ok(loaded > 300, `several pages were loaded (${loaded} rows)`);
    const deep = await agent.page.locator('.chat-row').last().getAttribute('data-username');
    assert.match(deep, /^customer_\d+$/);

    // Long lists scroll smoothly: a frame budget check while scrolling by wheel.
    const frameMs = await list.evaluate(async (el) => {
      el.scrollTop = 0;
      const times = [];
      let last = performance.now();
      for (let i = 0; i < 60; i++) {
        el.scrollTop += 400;
        await new Promise((r) => requestAnimationFrame(() => r()));
        const t = performance.now();
        times.push(t - last);
        last = t;
      }
      times.sort((a, b) => a - b);
      return times[Math.floor(times.length * 0.9)];
    });
    assert.ok(frameMs < 100, `90th percentile frame while scrolling: ${frameMs.toFixed(1)} ms`);

    // Search by username prefix.
    const t0 = Date.now();
    await agent.page.getByLabel('Search by username').fill('customer_09999');
    await until(async () => {
      const names = await agent.page.locator('.chat-row').evaluateAll((els) => els.map((e) => e.getAttribute('data-username')));
      return names.length >= 1 && names.every((n) => n.startsWith('customer_09999'));
    }, { what: 'search results' });
    const searchMs = Date.now() - t0;
    // customer_000240 has 241 unread messages: the badge caps at "99+".
    await agent.page.getByLabel('Search by username').fill('customer_000240');
    await until(async () => (await textOf(agent.page.locator('.chat-row[data-username="customer_000240"] [data-testid="unread-badge"]'))) === '99+', {
      what: '99+ badge',
    });
    await agent.page.getByLabel('Search by username').fill('');
    await agent.page.locator('.chat-row').first().waitFor();

    // A new customer still appears at the top, live.
    const name = uniqueName('newbie');
    const customer = await newCustomer(browser, stack.url, name);
    await send(customer.page, 'Hello from a busy shop');
    await until(async () => (await agent.page.locator('.chat-row').first().getAttribute('data-username')) === name, { what: 'new row on top' });
    await agent.page.locator('.chat-row').first().click();
    await message(agent.page, 'Hello from a busy shop').waitFor();
    console.log(`# scale: first rows after ${firstPaint} ms (login included), search ${searchMs} ms, p90 frame ${frameMs.toFixed(1)} ms, ${loaded} rows paged in`);
    assertClean(agent, customer);
    await agent.context.close();
    await customer.context.close();
  });
});

// Attachments in Chromium, across two gateways: a customer sends a photo from
// the widget and the agent (on the other node) sees its thumbnail live and
// opens it in the viewer; the agent sends a PDF the customer gets as a file
// card that downloads; uploaded HTML and SVG files with script run nothing
// when opened from the console (downloaded, sandboxed, never in its origin).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expectProblems, newAgent, newCustomer, send, uniqueName, webDir, withStack } from './harness.mjs';
import { assertClean, until } from './util.mjs';

/** Two gateways; this file also allows HTML and SVG uploads, to open them. */
const env = withStack({
  gateways: 2,
  env: { CHAT_UPLOAD_TYPES: 'image/jpeg,image/png,image/webp,image/gif,application/pdf,text/plain,text/html,image/svg+xml' },
});

const PHOTO = readFileSync(join(webDir, '..', 'docs', 'console.png'));
const PDF = Buffer.from('%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n');
const EVIL_HTML = Buffer.from(
  '<!doctype html><html><body><h1>hi</h1><script>try { localStorage.setItem("pwned", "html"); } catch (e) {} try { window.opener && (window.opener.__pwned = "html"); } catch (e) {} document.title = "pwned";</script></body></html>',
);
const EVIL_SVG = Buffer.from(
  '<svg xmlns="http://www.w3.org/2000/svg" onload="try { localStorage.setItem(\'pwned\', \'svg\'); } catch (e) {} try { window.opener && (window.opener.__pwned = \'svg\'); } catch (e) {}"><circle r="10"/></svg>',
);

/** Picks files in the composer, waits until every one is uploaded, then sends (with `text`, if any). */
async function attachAndSend(page, files, text = '') {
  await page.getByTestId('attach-input').setInputFiles(files);
  await until(async () => (await page.locator('[data-upload]').count()) === files.length, { what: 'pending uploads listed' });
  await page.locator('[data-upload="done"]').nth(files.length - 1).waitFor({ timeout: 15_000 });
  await until(async () => (await page.locator('[data-upload="done"]').count()) === files.length, { what: 'uploads done' });
  if (text) await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByRole('button', { name: 'Send' }).click();
  await until(async () => (await page.locator('[data-upload]').count()) === 0, { what: 'composer emptied' });
}

async function openChat(agent, name) {
  const row = agent.page.locator(`.chat-row[data-username="${name}"]`);
  await row.waitFor();
  await row.click();
  return row;
}

test('a photo from the widget shows as a thumbnail, live, on the agent of another gateway', async () => {
  const [widgetUrl, consoleUrl] = env.stack.urls;
  assert.notEqual(widgetUrl, consoleUrl);
  const name = uniqueName('photo');
  const customer = await newCustomer(env.browser, widgetUrl, name);
  await send(customer.page, 'hello, my order was wrong');
  const agent = await newAgent(env.browser, consoleUrl);
  const row = await openChat(agent, name);
  await agent.page.locator('.msg-text', { hasText: 'hello, my order was wrong' }).waitFor();

  await attachAndSend(customer.page, [{ name: 'wrong order.png', mimeType: 'image/png', buffer: PHOTO }]);
  // The customer's own bubble shows it; the agent gets it live (the page is not reloaded).
  const ownThumb = customer.page.locator('.msg-own .attachment-thumb img');
  await ownThumb.waitFor();
  const thumb = agent.page.locator('.msg-other .attachment-thumb img');
  await thumb.waitFor({ timeout: 10_000 });
  await until(async () => (await thumb.evaluate((img) => img.complete && img.naturalWidth)) === 320, { what: 'thumbnail decoded (320 px wide)' });
  assert.match(await thumb.getAttribute('src'), /\/api\/attachments\/[0-9a-f]{32}\/thumbnail\?exp=\d+&sig=[0-9a-f]+$/);
  // Click: the viewer shows the full photo.
  await agent.page.locator('.attachment-thumb').first().click();
  const full = agent.page.locator('.viewer .viewer-image');
  await full.waitFor();
  await until(async () => (await full.evaluate((img) => img.complete && img.naturalWidth)) === 1440, { what: 'full photo decoded' });
  await agent.page.keyboard.press('Escape');
  await agent.page.locator('.viewer').waitFor({ state: 'detached' });
  // The chat list says "Photo"; a reply quotes "Photo".
  await until(async () => ((await row.locator('.row-preview').textContent()) ?? '').includes('Photo'), { what: 'chat-list preview' });
  const bubble = agent.page.locator('.msg-other', { has: agent.page.locator('.attachment-thumb') });
  await bubble.hover();
  await bubble.getByRole('button', { name: 'Reply' }).click();
  await agent.page.locator('.composer-context .excerpt', { hasText: 'Photo' }).waitFor();
  await send(agent.page, 'Sorry about that!');
  await customer.page.locator('.msg', { has: customer.page.locator('.msg-text', { hasText: 'Sorry about that!' }) }).locator('.quote-excerpt', { hasText: 'Photo' }).waitFor();
  assertClean(agent, customer);
  await agent.context.close();
  await customer.context.close();
});

test('an agent sends a PDF: the customer gets a file card that downloads', async () => {
  const [widgetUrl, consoleUrl] = env.stack.urls;
  const name = uniqueName('pdf');
  const customer = await newCustomer(env.browser, widgetUrl, name);
  await send(customer.page, 'Do you have a menu?');
  const agent = await newAgent(env.browser, consoleUrl);
  await openChat(agent, name);
  await attachAndSend(agent.page, [{ name: 'menu.pdf', mimeType: 'application/pdf', buffer: PDF }], 'Here is our menu');
  const card = customer.page.locator('.msg-other .attachment-file');
  await card.waitFor();
  assert.equal((await card.locator('.attachment-file-name').textContent())?.trim(), 'menu.pdf');
  assert.equal((await card.locator('.attachment-file-size').textContent())?.trim(), `${PDF.length} B`);
  await customer.page.locator('.msg-other .msg-text', { hasText: 'Here is our menu' }).waitFor();
  // The card opens the signed link; the file comes as a download, never rendered in the page.
  await until(async () => !!(await card.getAttribute('href')), { what: 'signed link' });
  const [download] = await Promise.all([customer.page.waitForEvent('download'), card.click()]);
  assert.equal(download.suggestedFilename(), 'menu.pdf');
  const head = await customer.page.evaluate(async (href) => {
    const r = await fetch(href);
    return { status: r.status, type: r.headers.get('content-type'), disposition: r.headers.get('content-disposition'), body: await r.text() };
  }, await card.getAttribute('href'));
  assert.equal(head.status, 200);
  assert.equal(head.type, 'application/pdf');
  assert.match(head.disposition, /^attachment;/);
  assert.ok(head.body.startsWith('%PDF-1.4'));
  // Another customer's widget cannot fetch it, even knowing its id.
  const other = await newCustomer(env.browser, widgetUrl, uniqueName('other'));
  const id = (await card.getAttribute('data-attachment')) ?? '';
  const status = await other.page.evaluate(async (id) => {
    const token = JSON.parse(sessionStorage.getItem('chat.widget.session') ?? localStorage.getItem('chat.widget.session') ?? '{}').token;
    const r = await fetch(`/api/attachments/${id}/link`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    return r.status;
  }, id);
  assert.ok(status === 404 || status === 401, `another customer got ${status}`);
  other.problems.length = 0;
  assertClean(agent, customer);
  for (const c of [agent, customer, other]) await c.context.close();
});

test('uploaded HTML and SVG files with script do nothing when opened from the console', async () => {
  const [widgetUrl, consoleUrl] = env.stack.urls;
  const name = uniqueName('evil');
  const customer = await newCustomer(env.browser, widgetUrl, name);
  await send(customer.page, 'see attached');
  const agent = await newAgent(env.browser, consoleUrl);
  await openChat(agent, name);
  await attachAndSend(customer.page, [
    { name: 'invoice.html', mimeType: 'text/html', buffer: EVIL_HTML },
    { name: 'logo.svg', mimeType: 'image/svg+xml', buffer: EVIL_SVG },
  ]);
  const cards = agent.page.locator('.msg-other .attachment-file');
  await until(async () => (await cards.count()) === 2, { what: 'two file cards' });
  for (const n of [0, 1]) {
    const card = cards.nth(n);
    await until(async () => !!(await card.getAttribute('href')), { what: 'signed link' });
    // Clicked in the console: a download, not a page.
    const [download] = await Promise.all([agent.page.waitForEvent('download'), card.click()]);
    assert.ok(['invoice.html', 'logo.svg'].includes(download.suggestedFilename()), download.suggestedFilename());
    // Navigated to directly, it still only downloads: nothing renders in the console's origin.
    const href = new URL((await card.getAttribute('href')) ?? '', consoleUrl).toString();
    const tab = await agent.context.newPage();
    const [d2] = await Promise.all([tab.waitForEvent('download'), tab.goto(href).catch(() => null)]);
    assert.ok(d2.suggestedFilename());
    await tab.close();
  }
  // And were it rendered (a browser ignoring the disposition), the headers forbid script.
  const headers = await agent.page.evaluate(async (href) => {
    const r = await fetch(href);
    return { csp: r.headers.get('content-security-policy'), nosniff: r.headers.get('x-content-type-options') };
  }, await cards.nth(0).getAttribute('href'));
  assert.match(headers.csp, /sandbox/);
  assert.doesNotMatch(headers.csp, /allow-scripts/);
  assert.equal(headers.nosniff, 'nosniff');
  await agent.page.waitForTimeout(500);
  for (const p of [agent.page, customer.page]) {
    assert.equal(await p.evaluate(() => localStorage.getItem('pwned')), null, 'an uploaded file ran script in the console origin');
    assert.equal(await p.evaluate(() => window.__pwned), undefined);
    assert.notEqual(await p.title(), 'pwned');
  }
  assertClean(agent, customer);
  await agent.context.close();
  await customer.context.close();
});

test('a photo sent while offline waits in the outbox and goes once, when the connection is back', async () => {
  const [widgetUrl, consoleUrl] = env.stack.urls;
  const name = uniqueName('offline');
  const customer = await newCustomer(env.browser, widgetUrl, name);
  await send(customer.page, 'one moment');
  const agent = await newAgent(env.browser, consoleUrl);
  await openChat(agent, name);
  await agent.page.locator('.msg-text', { hasText: 'one moment' }).waitFor();
  // Uploaded while online; the connection drops before the message goes.
  await customer.page.getByTestId('attach-input').setInputFiles([{ name: 'receipt.png', mimeType: 'image/png', buffer: PHOTO }]);
  await customer.page.locator('[data-upload="done"]').waitFor({ timeout: 15_000 });
  customer.pause();
  await customer.context.setOffline(true);
  await customer.page.locator('[data-testid="connection-banner"]').waitFor();
  await customer.page.getByRole('button', { name: 'Send' }).click();
  const pending = customer.page.locator('[data-outbox]', { hasText: 'receipt.png' });
  await pending.waitFor();
  assert.match((await pending.textContent()) ?? '', /Not sent/);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await agent.page.locator('.msg-other .attachment-thumb').count(), 0, 'nothing leaves while offline');
  await customer.context.setOffline(false);
  await customer.page.locator('[data-testid="connection-banner"]').waitFor({ state: 'detached', timeout: 20_000 });
  customer.resume();
  await agent.page.locator('.msg-other .attachment-thumb img').waitFor({ timeout: 15_000 });
  await until(async () => (await customer.page.locator('[data-outbox]').count()) === 0, { what: 'outbox drained' });
  await customer.page.locator('.msg-own .attachment-thumb img').waitFor();
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(await agent.page.locator('.msg-other .attachment-thumb').count(), 1, 'sent exactly once');
  assert.equal(await customer.page.locator('.msg-own .attachment-thumb').count(), 1);
  assertClean(agent, customer);
  await agent.context.close();
  await customer.context.close();
});

test('composer: paste and drop add files, a refused file says why, retry after a failure, cancel', async () => {
  const [widgetUrl] = env.stack.urls;
  const customer = await newCustomer(env.browser, widgetUrl, uniqueName('composer'));
  const page = customer.page;
  const chips = page.locator('[data-upload]');
  // Paste an image into the message box.
  await page.getByLabel('Message', { exact: true }).evaluate((el, bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'pasted.png', { type: 'image/png' }));
    el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, [...PHOTO]);
  await page.locator('[data-upload="done"]', { hasText: 'pasted.png' }).waitFor({ timeout: 15_000 });
  // Drop a text file on the composer.
  await page.locator('form.composer').evaluate((form) => {
    const dt = new DataTransfer();
    dt.items.add(new File(['order 1042: 2 lattes'], 'note.txt', { type: 'text/plain' }));
    form.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
    form.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  });
  await page.locator('[data-upload="done"]', { hasText: 'note.txt' }).waitFor();
  // A file of a refused type: the chip says why; it can be removed.
  await page.getByTestId('attach-input').setInputFiles([{ name: 'tool.png', mimeType: 'image/png', buffer: Buffer.concat([Buffer.from('MZ'), Buffer.alloc(64)]) }]);
  const refused = page.locator('[data-upload="failed"]', { hasText: 'tool.png' });
  await refused.waitFor();
  assert.match((await refused.textContent()) ?? '', /not accepted/);
  assert.ok(await page.getByRole('button', { name: 'Send' }).isDisabled(), 'no send while a file is not uploaded');
  await refused.getByRole('button', { name: 'Remove tool.png' }).click();
  expectProblems(customer, /415/);
  // The network fails once: Retry uploads it.
  await page.route('**/api/attachments', (r) => r.abort());
  await page.getByTestId('attach-input').setInputFiles([{ name: 'menu.pdf', mimeType: 'application/pdf', buffer: PDF }]);
  const broken = page.locator('[data-upload="failed"]', { hasText: 'menu.pdf' });
  await broken.waitFor();
  await page.unroute('**/api/attachments');
  await broken.getByRole('button', { name: 'Retry' }).click();
  await page.locator('[data-upload="done"]', { hasText: 'menu.pdf' }).waitFor();
  expectProblems(customer, /request failed|ERR_FAILED/);
  // A slow upload is cancelled: it leaves the composer.
  await page.route('**/api/attachments', async (r) => {
    await new Promise((res) => setTimeout(res, 3000));
    await r.continue().catch(() => {});
  });
  await page.getByTestId('attach-input').setInputFiles([{ name: 'slow.txt', mimeType: 'text/plain', buffer: Buffer.from('slow') }]);
  await page.locator('[data-upload="uploading"]', { hasText: 'slow.txt' }).waitFor();
  await page.getByRole('button', { name: 'Cancel upload of slow.txt' }).click();
  await until(async () => (await chips.count()) === 3, { what: 'the cancelled upload left' });
  await page.unroute('**/api/attachments');
  customer.problems.splice(0, customer.problems.length, ...customer.problems.filter((p) => !/slow|api\/attachments/.test(p)));
  // Send the three: one photo and two file cards in one message.
  await page.getByRole('button', { name: 'Send' }).click();
  const own = page.locator('.msg-own', { has: page.locator('.attachment-thumb') });
  await own.waitFor();
  await own.locator('.attachment-thumb img').waitFor();
  assert.equal(await own.locator('.attachment-file').count(), 2);
  assert.deepEqual(await own.locator('.attachment-file-name').allTextContents(), ['note.txt', 'menu.pdf']);
  assertClean(customer);
  await customer.context.close();
});

// End-to-end harness: starts the stack through the workspace's test kit
// (`testkit stack`, the one way every test starts it) with the release
// `gateway` and `worker` binaries (CHAT_BIN_DIR, default ../target/release):
// the local Redis with a unique key prefix, a temporary SQLite database, dev
// mode, a free port; then drives headless Debian Chromium through playwright-core.

import { after, before } from 'node:test';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const webDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const artifacts = join(webDir, 'e2e', 'artifacts');
mkdirSync(artifacts, { recursive: true });

export const binDir = resolve(webDir, process.env.CHAT_BIN_DIR ?? '../target/release');

/** Resolves with the first stdout line of `child` (the stack's JSON). */
function firstLine(child, timeoutMs, stderr) {
  return new Promise((resolveLine, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`testkit stack was not ready within ${timeoutMs} ms:\n${stderr().slice(-2000)}`)), timeoutMs);
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolveLine(line);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`testkit stack exited with ${code} before it was ready:\n${stderr().slice(-2000)}`));
    });
  });
}

/**
 * Starts gateway(s) + worker; returns { url, urls, prefix, dir, stop }. `env` adds or overrides
 * variables of both processes (e.g. `CHAT_LOYALTY_URL` for an external loyalty service);
 * `gateways` starts that many nodes (`urls`).
 */
export async function startStack({ env: extraEnv = {}, gateways = 1 } = {}) {
  for (const b of ['gateway', 'worker', 'testkit']) {
    if (!existsSync(join(binDir, b))) {
      throw new Error(`${join(binDir, b)} is missing: build with \`cargo build --release -p gateway -p worker -p testkit\` or set CHAT_BIN_DIR`);
    }
  }
  if (!existsSync(join(webDir, 'dist', 'index.html'))) {
    throw new Error('web/dist is missing: run `npm run build` (or scripts/web-build.sh) first');
  }
  const prefix = `e2e-${randomBytes(6).toString('hex')}:`;
  const settings = { CHAT_WEB_DIR: join(webDir, 'dist'), ...extraEnv };
  const args = ['stack', '--gateways', String(gateways), '--workers', '1', '--db', 'sqlite', '--dev', '--prefix', prefix, '--bin-dir', binDir, '--grace-secs', '5'];
  for (const [k, v] of Object.entries(settings)) args.push('--env', `${k}=${v}`);
  const env = {
    ...process.env,
    REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    RUST_LOG: process.env.RUST_LOG ?? 'warn',
  };
  // stdin stays open: the kit stops the stack when it closes, so a crashed
  // test run cannot leave processes behind.
  const kit = spawn(join(binDir, 'testkit'), args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  kit.stderr.on('data', (d) => (stderr += d.toString()));
  const info = JSON.parse(await firstLine(kit, 60_000, () => stderr));
  return {
    url: info.gateways[0].url,
    /** Every gateway's URL (`gateways` > 1: the same stack through other nodes). */
    urls: info.gateways.map((g) => g.url),
    prefix: info.prefix,
    dir: info.dir,
    info,
    async stop() {
      if (kit.exitCode !== null) return;
      await new Promise((r) => {
        const t = setTimeout(() => kit.kill('SIGKILL'), 15_000);
        kit.once('exit', () => {
          clearTimeout(t);
          r();
        });
        // Closing stdin stops the processes (SIGTERM, SIGKILL after 5 s) and
        // removes the prefix's keys and the database.
        kit.stdin.end();
      });
    },
  };
}

/**
 * The usual fixture of a test file: one stack and one browser for the whole file,
 * started before its tests and stopped after them. Returns `{stack, browser}`,
 * filled in once the tests run.
 */
export function withStack(opts) {
  const env = { stack: null, browser: null };
  before(async () => {
    env.stack = await startStack(opts);
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.stack?.stop();
  });
  return env;
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

export const VIEWPORTS = {
  desktop: { width: 1440, height: 900 },
  tablet: { width: 834, height: 1112 },
  phone: { width: 390, height: 844 },
};

/**
 * Records what would show up as a problem in the browser: console errors, failed
 * requests and HTTP responses >= 400. `pause()` / `resume()` bracket steps where
 * failures are expected (the network is switched off on purpose).
 */
export function watch(page, label) {
  const problems = [];
  let paused = false;
  page.on('console', (m) => {
    if (m.type() === 'error' && !paused) problems.push(`${label} console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => {
    problems.push(`${label} page error: ${e.message}`);
  });
  page.on('requestfailed', (r) => {
    if (!paused) problems.push(`${label} request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText ?? ''}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !paused) problems.push(`${label} HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
  return {
    problems,
    pause: () => (paused = true),
    resume: () => (paused = false),
  };
}

export async function newAgent(browser, url, { viewport = VIEWPORTS.desktop, label = 'agent' } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const w = watch(page, label);
  await page.goto(url);
  await page.getByLabel('Username').fill('demo');
  await page.getByLabel('Password').fill('demo');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('link', { name: /^Chat/ }).click();
  await page.getByRole('heading', { name: /Customer Chats/ }).waitFor();
  return { context, page, ...w };
}

export async function newCustomer(browser, url, username, { viewport = { width: 420, height: 760 }, label = `customer ${username}` } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const w = watch(page, label);
  await page.goto(`${url}/widget`);
  await page.getByLabel('Your username').fill(username);
  await page.getByRole('button', { name: 'Start chat' }).click();
  await page.getByLabel('Message', { exact: true }).waitFor();
  await page.waitForFunction(() => !document.querySelector('[data-testid="connection-banner"]'));
  return { context, page, ...w };
}

/** The dev-mode service token of the order system (`CHAT_SERVICE_TOKEN` unset). */
export const DEV_SERVICE_TOKEN = 'dev-service-token';

/** A REST call from the test (not the browser); returns { status, body, headers }. */
export async function api(stack, path, { method, body, token, headers = {} } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (token) h.Authorization = `Bearer ${token}`;
  const r = await fetch(`${stack.url}${path}`, { method: method ?? (body !== undefined ? 'POST' : 'GET'), headers: h, body: body !== undefined ? JSON.stringify(body) : undefined });
  const text = await r.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: r.status, body: json, headers: r.headers };
}

/** Logs the demo agent in over REST; returns its token. */
export async function agentToken(stack) {
  const r = await api(stack, '/api/login', { body: { username: 'demo', password: 'demo' } });
  if (r.status !== 200) throw new Error(`login: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body.token;
}

/** Posts an order event as the order system does (`POST /api/orders/events`, service token); expects 202. */
export async function postOrderEvent(stack, event) {
  const r = await api(stack, '/api/orders/events', { body: { currency: 'EUR', ts: Date.now(), ...event }, token: DEV_SERVICE_TOKEN });
  if (r.status !== 202) throw new Error(`order event: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/**
 * Takes the expected problems (matching `re`) out of a watcher's list; fails when
 * none matched, so a test states exactly which errors it provokes.
 */
export function expectProblems(w, re) {
  const hit = w.problems.filter((p) => re.test(p));
  if (!hit.length) throw new Error(`expected a problem matching ${re}; got:\n${w.problems.join('\n')}`);
  const rest = w.problems.filter((p) => !re.test(p));
  w.problems.length = 0;
  w.problems.push(...rest);
  return hit;
}

export function uniqueName(base) {
  return `${base}${randomBytes(3).toString('hex')}`;
}

/** Types a message in the composer and sends it with Enter. */
export async function send(page, text) {
  const box = page.getByLabel('Message', { exact: true });
  await box.fill(text);
  await box.press('Enter');
}

/** The message element (bubble row) whose text is exactly `text`. */
export function message(page, text) {
  return page.locator('.msg', { has: page.locator('.msg-text', { hasText: new RegExp(`^${escapeRe(text)}$`) }) });
}

export function escapeRe(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`) });
}

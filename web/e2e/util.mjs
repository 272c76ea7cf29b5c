import assert from 'node:assert/strict';

/** Polls `fn` until it returns a truthy value (or throws after `timeout` ms). */
export async function until(fn, { timeout = 10_000, every = 100, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

export async function textOf(locator) {
  return (await locator.textContent())?.trim() ?? '';
}

export function assertClean(...watchers) {
  const all = watchers.flatMap((w) => w.problems);
  assert.deepEqual(all, [], `browser problems:\n${all.join('\n')}`);
}

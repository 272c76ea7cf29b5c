// Watches (agent sockets): an agent receives a conversation's live events only
// while it watches it. The tracked conversations are the watched ones: the
// `resume` that opens a connection watches them all, a conversation tracked
// later gets its own `watch` (answered by a `replay`), an untracked one `unwatch`.

import { uuid } from '../api';
import type { OutgoingFrame } from '../types';

/** A `watch` refused for a passing reason (rate limit, busy server) is sent again after this. */
const WATCH_RETRY_MS = 1_000;

export interface WatchHooks {
  /** Whether this socket watches at all (agents do; customers receive their own conversation). */
  enabled: () => boolean;
  /** The held position of a tracked conversation; undefined when it is not tracked. */
  position: (conversation: string) => number | undefined;
  send: (frame: OutgoingFrame) => boolean;
}

export class Watches {
  /** The current connection's `resume` went out: later tracks need their own `watch`. */
  private resumed = false;
  /** rid of each `watch` not yet answered -> its conversation (the `replay` frame answers). */
  private rids = new Map<string, string>();
  private retries = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(private readonly hooks: WatchHooks) {}

  /** The connection's `resume` (which watches everything tracked) was sent. */
  resumeSent(): void {
    this.resumed = true;
  }

  /** Watches a tracked conversation from its held position (the resume covers it when not connected). */
  watch(conversation: string): void {
    if (!this.hooks.enabled() || !this.resumed) return;
    const after = this.hooks.position(conversation);
    if (after === undefined) return;
    this.forget(conversation);
    const rid = `watch:${uuid()}`;
    if (this.hooks.send({ type: 'watch', rid, conversation, after })) this.rids.set(rid, conversation);
  }

  /** Stops watching an untracked conversation. Not connected: the next resume simply does not name it. */
  unwatch(conversation: string): void {
    this.forget(conversation);
    if (this.hooks.enabled() && this.resumed) this.hooks.send({ type: 'unwatch', conversation });
  }

  /** Whether an `error` with this rid answers one of our watches. */
  owns(rid: string): boolean {
    return this.rids.has(rid);
  }

  /** The `replay` frame that answers a watch (or the resume) arrived. */
  answered(conversation: string): void {
    for (const [rid, c] of this.rids) if (c === conversation) this.rids.delete(rid);
  }

  refused(rid: string, code: string): void {
    const conversation = this.rids.get(rid)!;
    this.rids.delete(rid);
    // not_found, forbidden, invalid: sending it again would not help.
    if (code !== 'rate_limited' && code !== 'unavailable') return;
    if (this.retries.has(conversation)) return;
    this.retries.set(
      conversation,
      setTimeout(() => {
        this.retries.delete(conversation);
        if (this.hooks.position(conversation) !== undefined) this.watch(conversation);
      }, WATCH_RETRY_MS),
    );
  }

  /** The connection ended: the next resume watches everything tracked again. */
  reset(): void {
    this.resumed = false;
    this.rids.clear();
    for (const t of this.retries.values()) clearTimeout(t);
    this.retries.clear();
  }

  private forget(conversation: string): void {
    this.answered(conversation);
    const t = this.retries.get(conversation);
    if (t) clearTimeout(t);
    this.retries.delete(conversation);
  }
}

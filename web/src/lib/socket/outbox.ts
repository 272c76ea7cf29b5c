// The outbox: messages typed while offline (or not yet acknowledged) wait here,
// marked as not sent, and go out once per client_id when the connection returns.
// A message leaves it when its `ack` (rid = client_id) or its own `message`
// frame (same client_id) arrives. With a storage key it survives a page reload.

import { uuid } from '../api';
import type { Attachment, OutgoingFrame, ReplyRef } from '../types';

const SEND_TIMEOUT_MS = 15_000;

export interface OutboxItem {
  client_id: string;
  conversation: string;
  text: string;
  reply_to?: ReplyRef;
  /** Files already uploaded for this message (kept, like the text, across a reconnect or reload). */
  attachments?: Attachment[];
  /** queued: waiting for a connection; sending: sent, no ack yet; failed: the server refused or did not answer. */
  status: 'queued' | 'sending' | 'failed';
  error?: string;
  created: number;
}

export class Outbox {
  items: readonly OutboxItem[] = [];
  private timers = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(
    private readonly storageKey: string | undefined,
    /** The items changed (not called for the requeue on disconnect: a state change follows it). */
    private readonly changed: () => void,
  ) {
    this.items = this.load();
  }

  add(conversation: string, text: string, replyTo?: ReplyRef, attachments?: Attachment[]): OutboxItem {
    const item: OutboxItem = {
      client_id: uuid(),
      conversation,
      text,
      reply_to: replyTo,
      attachments: attachments?.length ? attachments : undefined,
      status: 'queued',
      created: Date.now(),
    };
    this.items = [...this.items, item];
    this.save();
    this.changed();
    return item;
  }

  find(clientId: string): OutboxItem | undefined {
    return this.items.find((it) => it.client_id === clientId);
  }

  /** Sends an item (its client_id is also the rid); nothing happens when `send` cannot. */
  transmit(item: OutboxItem, send: (f: OutgoingFrame) => boolean): void {
    const frame: OutgoingFrame = {
      type: 'send',
      rid: item.client_id,
      conversation: item.conversation,
      client_id: item.client_id,
      text: item.text,
    };
    if (item.reply_to) frame.reply_to = item.reply_to.seq;
    if (item.attachments?.length && frame.type === 'send') frame.attachments = item.attachments.map((a) => a.id);
    if (!send(frame)) return;
    this.update(item.client_id, { status: 'sending' });
    this.clearTimer(item.client_id);
    this.timers.set(
      item.client_id,
      setTimeout(() => {
        this.timers.delete(item.client_id);
        const cur = this.find(item.client_id);
        if (cur?.status === 'sending') this.update(item.client_id, { status: 'failed', error: 'The server did not answer.' });
      }, SEND_TIMEOUT_MS),
    );
  }

  /** Sends every queued item (the connection is back). */
  flush(send: (f: OutgoingFrame) => boolean): void {
    for (const it of this.items) if (it.status === 'queued') this.transmit(it, send);
  }

  /** Marks a failed item queued again; returns it (as queued) when it exists. */
  requeueOne(clientId: string): OutboxItem | undefined {
    const item = this.find(clientId);
    if (!item) return undefined;
    this.update(clientId, { status: 'queued', error: undefined });
    return { ...item, status: 'queued' };
  }

  /** The message is stored (ack, or its own frame came back): it leaves the outbox. Returns it when it was there. */
  done(clientId: string): OutboxItem | undefined {
    const item = this.find(clientId);
    if (!item) return undefined;
    this.clearTimer(clientId);
    this.remove(clientId);
    return item;
  }

  /** The server refused it. */
  failed(clientId: string, error: string): void {
    if (!this.find(clientId)) return;
    this.clearTimer(clientId);
    this.update(clientId, { status: 'failed', error });
  }

  discard(clientId: string): void {
    this.clearTimer(clientId);
    this.remove(clientId);
  }

  /** The connection was lost: sent but not acknowledged goes again (same client_id) after reconnecting. */
  requeueSending(): void {
    let changed = false;
    this.items = this.items.map((it) => {
      if (it.status !== 'sending') return it;
      changed = true;
      this.clearTimer(it.client_id);
      return { ...it, status: 'queued' };
    });
    if (changed) this.save();
  }

  clearTimers(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private clearTimer(clientId: string): void {
    const t = this.timers.get(clientId);
    if (t) clearTimeout(t);
    this.timers.delete(clientId);
  }

  private update(clientId: string, patch: Partial<OutboxItem>): void {
    this.items = this.items.map((it) => (it.client_id === clientId ? { ...it, ...patch } : it));
    this.save();
    this.changed();
  }

  private remove(clientId: string): void {
    const before = this.items.length;
    this.items = this.items.filter((it) => it.client_id !== clientId);
    if (this.items.length !== before) {
      this.save();
      this.changed();
    }
  }

  private load(): OutboxItem[] {
    if (!this.storageKey) return [];
    try {
      const raw = sessionStorage.getItem(this.storageKey);
      const items = raw ? (JSON.parse(raw) as OutboxItem[]) : [];
      return items.map((it) => (it.status === 'sending' ? { ...it, status: 'queued' } : it));
    } catch {
      return [];
    }
  }

  private save(): void {
    if (!this.storageKey) return;
    try {
      sessionStorage.setItem(this.storageKey, JSON.stringify(this.items));
    } catch {
      /* storage full or disabled: the outbox still lives in memory */
    }
  }
}

// Messages of the open conversation(s): history pages over REST merged with the
// live events the socket delivers. Every event applies idempotently (a message
// replaces the one with its seq; edits, deletions and reaction counts are
// absolute), so a replayed event after a reconnect does no harm.
//
// An agent socket receives a conversation's live events only while it watches it,
// and it watches exactly the conversations tracked here (the socket sends `watch`
// when a conversation is tracked, `unwatch` when it is untracked): the loaded ones,
// up to MAX_CACHED. Loading a conversation fetches the history, then tracks it from
// the position the history reflects, so the server replays whatever came after.

import { request, query, ApiError } from '../lib/api';
import type { ChatSocket } from '../lib/socket';
import { provisionalMessage } from '../lib/socket';
import type { ConversationDetail, ConversationRow, EventFrame, Message, ServerFrame, UserRef } from '../lib/types';
import { isEventFrame } from '../lib/types';

export type Side = 'staff' | 'customer';

export interface ConvState {
  id: string;
  status: 'loading' | 'ready' | 'error';
  error?: string;
  /** Sorted by seq, oldest first. */
  messages: readonly Message[];
  hasMore: boolean;
  loadingOlder: boolean;
  /** Receipts of the other side: up to which seq it has received / read. */
  other: { delivered: number; seen: number };
  online: boolean | null;
  typing: { who: UserRef; until: number } | null;
  /** `${seq}:${emoji}` this user reacted with (known from live frames). */
  mine: ReadonlySet<string>;
  row?: ConversationRow;
}

const PAGE = 50;
const MAX_CACHED = 12;
/** Live events kept per conversation that is not open, and how many conversations. */
const RECENT_PER_CONV = 40;
const RECENT_CONVS = 500;

interface MessagesPage {
  items: Message[];
  has_more: boolean;
}

export class ConversationStore {
  private convs = new Map<string, ConvState>();
  private buffers = new Map<string, EventFrame[]>();
  /**
   * Recent live events of conversations that are not loaded (the customer's own
   * conversation before it loads; for an agent, only events still in flight when a
   * conversation stopped being watched). History comes from the SQL record, which the
   * worker writes a moment after the event went out live: an event that arrived just
   * before a conversation is opened may not be in the first page yet, so it is merged
   * from here. (A watch after the page's position replays such events as well.)
   */
  private recent = new Map<string, EventFrame[]>();
  private loads = new Map<string, number>();
  private listeners = new Map<string, Set<() => void>>();
  private sentSeen = new Map<string, number>();
  private sentDelivered = new Map<string, number>();
  private typingTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private loadSeq = 0;
  private unsubs: (() => void)[] = [];

  constructor(
    private readonly socket: ChatSocket,
    readonly side: Side,
    readonly token: () => string | null,
  ) {
    this.unsubs.push(
      socket.onFrame((f) => this.onFrame(f)),
      socket.onConnected((e) => {
        for (const [id, c] of this.convs) {
          if (e.epochChanged || c.status !== 'ready') void this.load(id, e.epochChanged);
          // Receipts are state, not replayed events: read them again.
          else void this.refreshDetail(id);
        }
        // Anything we thought we had sent may have been lost with the old socket.
        this.sentSeen.clear();
        this.sentDelivered.clear();
      }),
      socket.onSent((e) => {
        const c = this.convs.get(e.item.conversation);
        if (!c || c.status !== 'ready' || c.messages.some((m) => m.seq === e.seq)) return;
        this.update(e.item.conversation, { messages: insert(c.messages, provisionalMessage(e, this.socket.user)) });
      }),
    );
  }

  dispose(): void {
    this.unsubs.forEach((u) => u());
    for (const t of this.typingTimers.values()) clearTimeout(t);
  }

  get(id: string): ConvState | undefined {
    return this.convs.get(id);
  }

  subscribe(id: string, fn: () => void): () => void {
    let set = this.listeners.get(id);
    if (!set) this.listeners.set(id, (set = new Set()));
    set.add(fn);
    return () => set!.delete(fn);
  }

  /** Makes sure a conversation is loaded (or loading). */
  open(id: string): void {
    const c = this.convs.get(id);
    if (c && c.status !== 'error') {
      // Most recently used last, for eviction.
      this.convs.delete(id);
      this.convs.set(id, c);
      return;
    }
    void this.load(id, true);
    this.evict();
  }

  private evict(): void {
    while (this.convs.size > MAX_CACHED) {
      const oldest = this.convs.keys().next().value as string;
      this.convs.delete(oldest);
      this.buffers.delete(oldest);
      this.loads.delete(oldest); // a load still running must not bring it back
      this.socket.untrack(oldest); // an agent stops watching it
    }
  }

  reload(id: string): void {
    void this.load(id, false);
  }

  /**
   * Loads the latest history page. The conversation is untracked (an agent stops
   * watching it) until the page is there, then tracked (watched) from the position
   * the page reflects, so the server replays what came after it. `keepWatching`: the
   * server asked for this reload (`replay` with `complete: false`) and goes on sending
   * live events: keep watching, and do not watch again from the page's position (the
   * server would answer incomplete again if that position is ahead of it).
   */
  private async load(id: string, clear: boolean, keepWatching = false): Promise<void> {
    const mySeq = ++this.loadSeq;
    this.loads.set(id, mySeq);
    if (!keepWatching) this.socket.untrack(id);
    this.buffers.set(id, []);
    const prev = this.convs.get(id);
    const base: ConvState =
      prev && !clear
        ? { ...prev, status: prev.messages.length ? prev.status : 'loading' }
        : {
            id,
            status: 'loading',
            messages: [],
            hasMore: false,
            loadingOlder: false,
            other: { delivered: 0, seen: 0 },
            online: null,
            typing: null,
            mine: new Set(),
          };
    this.convs.set(id, base);
    this.emit(id);
    try {
      const detail = await request<ConversationDetail>(`/api/conversations/${encodeURIComponent(id)}`, { token: this.token() });
      const page = await request<MessagesPage>(
        `/api/conversations/${encodeURIComponent(id)}/messages${query({ limit: PAGE })}`,
        { token: this.token() },
      );
      if (this.loads.get(id) !== mySeq) return;
      const items = [...(page.items ?? [])].sort((a, b) => a.seq - b.seq);
      // Everything up to this position is reflected in the page we got.
      const lastSeq = items.length ? items[items.length - 1].seq : 0;
      const basePos = Math.max(detail.row?.last_seq ?? 0, lastSeq);
      const cur = this.convs.get(id) ?? base;
      let next: ConvState = {
        ...cur,
        status: 'ready',
        error: undefined,
        messages: items,
        hasMore: !!page.has_more,
        row: detail.row ?? cur.row,
        online: !!detail.online,
        other: this.otherReceipts(cur, detail),
      };
      // Watches it (when it is not watched yet): the events after basePos are replayed.
      this.socket.track(id, basePos);
      const buffered = [...(this.recent.get(id) ?? []), ...(this.buffers.get(id) ?? [])].sort((a, b) => a.pos - b.pos);
      this.buffers.delete(id);
      this.recent.delete(id);
      for (const ev of buffered) {
        if (ev.pos <= basePos) continue;
        next = this.apply(next, ev);
        this.socket.track(id, ev.pos);
      }
      this.convs.set(id, next);
      this.emit(id);
      this.markDelivered(id);
    } catch (e) {
      if (this.loads.get(id) !== mySeq) return;
      this.buffers.delete(id);
      const msg =
        e instanceof ApiError && e.status === 404
          ? 'This conversation does not exist.'
          : e instanceof ApiError && e.status === 0
            ? 'Cannot reach the server. It will load when the connection is back.'
            : 'The conversation could not be loaded.';
      this.update(id, { status: 'error', error: msg });
    }
  }

  private async refreshDetail(id: string): Promise<void> {
    try {
      const d = await request<ConversationDetail>(`/api/conversations/${encodeURIComponent(id)}`, { token: this.token() });
      const c = this.convs.get(id);
      if (!c) return;
      this.update(id, { row: d.row ?? c.row, online: !!d.online, other: this.otherReceipts(c, d) });
    } catch {
      /* the next event brings it */
    }
  }

  /** The other side's read state from a detail answer (receipts only move forward). */
  private otherReceipts(c: ConvState, d: ConversationDetail): ConvState['other'] {
    const r = d.receipts;
    const delivered = (this.side === 'staff' ? r?.customer_delivered : r?.staff_delivered) ?? 0;
    const seen = (this.side === 'staff' ? r?.customer_seen : r?.staff_seen) ?? 0;
    return { delivered: Math.max(c.other.delivered, delivered, seen), seen: Math.max(c.other.seen, seen) };
  }

  /** Loads the page before the oldest message held. */
  async loadOlder(id: string): Promise<void> {
    const c = this.convs.get(id);
    if (!c || c.status !== 'ready' || !c.hasMore || c.loadingOlder) return;
    const oldest = c.messages[0]?.seq;
    this.update(id, { loadingOlder: true });
    try {
      const page = await request<MessagesPage>(
        `/api/conversations/${encodeURIComponent(id)}/messages${query({ before: oldest, limit: PAGE })}`,
        { token: this.token() },
      );
      const cur = this.convs.get(id);
      if (!cur) return;
      let msgs = cur.messages;
      for (const m of page.items ?? []) if (!msgs.some((x) => x.seq === m.seq)) msgs = insert(msgs, m);
      this.update(id, { messages: msgs, hasMore: !!page.has_more, loadingOlder: false });
    } catch {
      this.update(id, { loadingOlder: false });
    }
  }

  /** Loads older pages until the message with `seq` is held; false if it is not there. */
  async ensureMessage(id: string, seq: number): Promise<boolean> {
    for (let i = 0; i < 200; i++) {
      const c = this.convs.get(id);
      if (!c) return false;
      if (c.messages.some((m) => m.seq === seq)) return true;
      if (!c.hasMore || (c.messages[0] && c.messages[0].seq < seq)) return false;
      const before = c.messages.length;
      await this.loadOlder(id);
      const after = this.convs.get(id);
      if (!after || (after.messages.length === before && !after.hasMore)) return after?.messages.some((m) => m.seq === seq) ?? false;
    }
    return false;
  }

  /** Tells the server this side has read up to the latest message. */
  markSeen(id: string): void {
    const c = this.convs.get(id);
    if (!c || c.status !== 'ready' || !c.messages.length) return;
    const latest = c.messages[c.messages.length - 1].seq;
    if ((this.sentSeen.get(id) ?? 0) >= latest) return;
    if (this.socket.fire({ type: 'seen', conversation: id, seq: latest })) this.sentSeen.set(id, latest);
    this.markDelivered(id);
  }

  markDelivered(id: string, seq?: number): void {
    const c = this.convs.get(id);
    const latest = seq ?? (c && c.messages.length ? c.messages[c.messages.length - 1].seq : 0);
    if (!latest || (this.sentDelivered.get(id) ?? 0) >= latest) return;
    if (this.socket.fire({ type: 'delivered', conversation: id, seq: latest })) {
      // An agent hears every conversation: keep this map bounded (a repeat is harmless).
      if (this.sentDelivered.size > 5000) this.sentDelivered.clear();
      this.sentDelivered.set(id, latest);
    }
  }

  // ------------------------------------------------------------ live frames

  private isOtherSide(who: UserRef | undefined): boolean {
    if (!who) return false;
    return this.side === 'staff' ? who.kind === 'customer' : who.kind === 'agent';
  }

  private onFrame(f: ServerFrame): void {
    if (isEventFrame(f)) {
      const id = f.conversation;
      if (f.type === 'message') {
        const m = f.message;
        const fromOther = this.side === 'staff' ? m.kind === 'customer' : m.kind !== 'customer';
        if (fromOther) this.markDelivered(id, f.message.seq);
        if (m.author && this.isOtherSide(m.author)) this.clearTyping(id);
      }
      const buf = this.buffers.get(id);
      if (buf) {
        buf.push(f);
        return;
      }
      const c = this.convs.get(id);
      if (!c || c.status !== 'ready') {
        this.remember(f);
        return;
      }
      this.convs.set(id, this.apply(c, f));
      this.emit(id);
      return;
    }
    switch (f.type) {
      case 'typing': {
        if (!this.isOtherSide(f.who)) return;
        const c = this.convs.get(f.conversation);
        if (!c) return;
        const ms = Math.max(500, Math.min(f.expires_in_ms || 5000, 15000));
        this.update(f.conversation, { typing: { who: f.who, until: Date.now() + ms } });
        const old = this.typingTimers.get(f.conversation);
        if (old) clearTimeout(old);
        this.typingTimers.set(
          f.conversation,
          setTimeout(() => this.clearTyping(f.conversation), ms),
        );
        return;
      }
      case 'receipt': {
        const c = this.convs.get(f.conversation);
        if (!c) return;
        const delivered = Math.max(c.other.delivered, f.delivered_seq ?? 0, f.seen_seq ?? 0);
        const seen = Math.max(c.other.seen, f.seen_seq ?? 0);
        if (delivered !== c.other.delivered || seen !== c.other.seen) this.update(f.conversation, { other: { delivered, seen } });
        return;
      }
      case 'presence': {
        if (this.convs.has(f.customer)) this.update(f.customer, { online: f.online });
        return;
      }
      case 'conversation': {
        if (this.convs.has(f.id)) {
          const { type: _t, ...row } = f;
          void _t;
          this.update(f.id, { row });
        }
        // The console received the customer's unread messages (the row shows them in
        // the list) even when it does not watch the conversation: report them delivered.
        if (this.side === 'staff' && f.unread > 0 && typeof f.last_seq === 'number' && f.last_seq > 0) {
          this.markDelivered(f.id, f.last_seq);
        }
        return;
      }
      case 'replay': {
        // The server could not replay everything: history must come from REST again.
        if (!f.complete && this.convs.has(f.conversation)) void this.load(f.conversation, false, true);
        return;
      }
      default:
        return;
    }
  }

  private remember(f: EventFrame): void {
    let list = this.recent.get(f.conversation);
    if (list) this.recent.delete(f.conversation);
    else list = [];
    list.push(f);
    if (list.length > RECENT_PER_CONV) list.shift();
    this.recent.set(f.conversation, list); // most recent last
    if (this.recent.size > RECENT_CONVS) this.recent.delete(this.recent.keys().next().value as string);
  }

  private clearTyping(id: string): void {
    const t = this.typingTimers.get(id);
    if (t) clearTimeout(t);
    this.typingTimers.delete(id);
    const c = this.convs.get(id);
    if (c?.typing) this.update(id, { typing: null });
  }

  private apply(c: ConvState, f: EventFrame): ConvState {
    switch (f.type) {
      case 'message':
        return { ...c, messages: insert(c.messages, f.message) };
      case 'edited':
        return {
          ...c,
          messages: c.messages.map((m) => (m.seq === f.seq ? { ...m, text: f.text, edited_at: f.edited_at } : m)),
        };
      case 'deleted':
        return { ...c, messages: c.messages.map((m) => (m.seq === f.seq ? { ...m, deleted: true, text: '' } : m)) };
      case 'order':
        // The order card at `seq` changed: replace its order in place (absolute, so a replay is harmless).
        // A card not held (an older page) comes back from history with the new state.
        return { ...c, messages: c.messages.map((m) => (m.seq === f.seq ? { ...m, order: f.order } : m)) };
      case 'reactions': {
        const me = this.socket.user;
        let mine = c.mine;
        if (me && f.by && f.by.id === me.id && f.by.kind === me.kind) {
          const s = new Set(mine);
          const k = `${f.seq}:${f.emoji}`;
          if (f.on) s.add(k);
          else s.delete(k);
          mine = s;
        }
        return {
          ...c,
          mine,
          messages: c.messages.map((m) => (m.seq === f.seq ? { ...m, reactions: { ...f.reactions } } : m)),
        };
      }
    }
  }

  private update(id: string, patch: Partial<ConvState>): void {
    const c = this.convs.get(id);
    if (!c) return;
    this.convs.set(id, { ...c, ...patch });
    this.emit(id);
  }

  private emit(id: string): void {
    this.listeners.get(id)?.forEach((l) => l());
  }
}

/** Inserts or replaces a message by seq, keeping the list sorted. */
export function insert(list: readonly Message[], m: Message): Message[] {
  const out = list.slice();
  let lo = 0;
  let hi = out.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (out[mid].seq < m.seq) lo = mid + 1;
    else hi = mid;
  }
  if (out[lo]?.seq === m.seq) out[lo] = m;
  else out.splice(lo, 0, m);
  return out;
}

// The one WebSocket client of the app (console and widget alike). It owns:
// - the connection: a single-use ticket from POST /api/ws-ticket, then /ws?ticket=
// - reconnect with exponential backoff and jitter, paused while the browser is offline,
//   and a heartbeat (ping/pong) so a silently dead socket is noticed;
// - resume: the highest event position held per tracked conversation, sent as the
//   FIRST frame of every connection so the server replays what was missed;
// - watch (agent sockets): an agent receives a conversation's live events only while
//   it watches it. The tracked conversations are the watched ones: `resume` watches
//   them all on (re)connect, `track` of a new one sends `watch`, `untrack` `unwatch`;
// - the epoch from `hello`: when it changes, local state is stale and is dropped;
// - the outbox: messages typed while offline (or not yet acknowledged) wait here,
//   marked as not sent, and go out once per client_id when the connection returns.

import { uuid } from './api';
import type { EventFrame, Message, ServerFrame, UserRef } from './types';
import { isEventFrame } from './types';

export type ConnState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'offline' | 'closed';

export interface OutboxItem {
  client_id: string;
  conversation: string;
  text: string;
  reply_to?: { seq: number; excerpt: string };
  /** queued: waiting for a connection; sending: sent, no ack yet; failed: the server refused or did not answer. */
  status: 'queued' | 'sending' | 'failed';
  error?: string;
  created: number;
}

export interface ConnectedEvent {
  /** false for the first connection of this socket object. */
  reconnect: boolean;
  /** The server's epoch changed: drop local state and reload it. */
  epochChanged: boolean;
}

export interface SentEvent {
  item: OutboxItem;
  seq: number;
  ts: number;
}

export interface SocketOptions {
  /** Fetches a single-use ticket (POST /api/ws-ticket). Throw an ApiError with status 401 to stop. */
  getTicket: () => Promise<string>;
  /** Called when the ticket request is refused with 401: the session ended. */
  onAuthFailed?: () => void;
  /** Builds the WebSocket URL for a ticket; default: same origin, /ws?ticket=. */
  url?: (ticket: string) => string;
  /** The outbox survives a reload of the page when a key is given. */
  storageKey?: string;
  /**
   * Agent sockets: send `watch`/`unwatch` as conversations are tracked and untracked
   * (an agent gets a conversation's live events only while it watches it). Customer
   * sockets receive their own conversation and must not watch (`forbidden`).
   */
  watch?: boolean;
}

type ClientFrame = Record<string, unknown> & { type: string };

const REQUEST_TIMEOUT_MS = 10_000;
const SEND_TIMEOUT_MS = 15_000;
const PING_EVERY_MS = 20_000;
const PONG_TIMEOUT_MS = 8_000;
const BACKOFF_BASE_MS = 300;
const BACKOFF_MAX_MS = 10_000;
/** A `watch` refused for a passing reason (rate limit, busy server) is sent again after this. */
const WATCH_RETRY_MS = 1_000;

interface Pending {
  resolve: (f: ServerFrame) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class SocketError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'SocketError';
  }
}

export class ChatSocket {
  state: ConnState = 'idle';
  user: UserRef | null = null;
  /** For a customer: their own conversation (from `hello`). */
  ownConversation: string | null = null;
  epoch: string | null = null;
  outbox: readonly OutboxItem[] = [];

  private ws: WebSocket | null = null;
  private connectedOnce = false;
  private helloSeen = false;
  private stopped = true;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private pongTimer: ReturnType<typeof setTimeout> | null = null;
  private positions = new Map<string, number>();
  /** The current connection's `resume` went out: later tracks need their own `watch`. */
  private resumed = false;
  /** rid of each `watch` not yet answered -> its conversation (the `replay` frame answers). */
  private watchRids = new Map<string, string>();
  private watchRetries = new Map<string, ReturnType<typeof setTimeout>>();
  private pending = new Map<string, Pending>();
  private sendTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private frameListeners = new Set<(f: ServerFrame) => void>();
  private connectedListeners = new Set<(e: ConnectedEvent) => void>();
  private sentListeners = new Set<(e: SentEvent) => void>();
  private changeListeners = new Set<() => void>();
  private generation = 0;

  constructor(private readonly opts: SocketOptions) {
    this.outbox = this.loadOutbox();
  }

  // ------------------------------------------------------------ lifecycle

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    this.clearTimers();
    this.generation++;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(1000, 'bye');
    }
    this.failPending('closed');
    this.setState('closed');
  }

  private onOnline = () => {
    if (this.stopped) return;
    if (this.state === 'offline' || this.state === 'reconnecting') {
      this.attempt = 0;
      this.scheduleReconnect(0);
    }
  };

  private onOffline = () => {
    if (this.stopped) return;
    // The socket may linger for a long time before the OS notices; do not trust it.
    if (this.ws) this.handleClose(this.generation);
    else this.setState('offline');
  };

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.clearRetry();
    if (typeof navigator !== 'undefined' && navigator.onLine === false) {
      this.setState('offline');
      return; // the 'online' event resumes
    }
    const gen = ++this.generation;
    this.setState(this.connectedOnce ? 'reconnecting' : 'connecting');
    let ticket: string;
    try {
      ticket = await this.opts.getTicket();
    } catch (e) {
      if (gen !== this.generation || this.stopped) return;
      if ((e as { status?: number }).status === 401) {
        this.stopped = true;
        this.setState('closed');
        this.opts.onAuthFailed?.();
        return;
      }
      this.scheduleReconnect();
      return;
    }
    if (gen !== this.generation || this.stopped) return;
    const url = this.opts.url
      ? this.opts.url(ticket)
      : `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?ticket=${encodeURIComponent(ticket)}`;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.helloSeen = false;
    this.resumed = false;
    ws.onopen = () => {
      if (gen !== this.generation) return;
      // Resume must be the first frame of every connection. For an agent it also
      // watches every conversation it names.
      const positions: Record<string, number> = {};
      for (const [c, p] of this.positions) positions[c] = p;
      // The epoch the positions belong to: the server answers complete:false when it changed.
      this.rawSend(this.epoch ? { type: 'resume', positions, epoch: this.epoch } : { type: 'resume', positions });
      this.resumed = true;
      this.startHeartbeat(gen);
    };
    ws.onmessage = (ev) => {
      if (gen !== this.generation) return;
      this.bumpHeartbeat();
      let frame: ServerFrame;
      try {
        frame = JSON.parse(typeof ev.data === 'string' ? ev.data : '') as ServerFrame;
      } catch {
        return;
      }
      if (!frame || typeof frame !== 'object' || typeof frame.type !== 'string') return;
      this.handleFrame(frame);
    };
    ws.onerror = () => {
      // onclose follows; nothing to do here.
    };
    ws.onclose = () => this.handleClose(gen);
  }

  private handleClose(gen: number): void {
    if (gen !== this.generation) return;
    this.generation++;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      try {
        ws.close();
      } catch {
        /* already closed */
      }
    }
    this.stopHeartbeat();
    this.resetWatches();
    this.failPending('disconnected');
    // Sent but not acknowledged: send again (same client_id) after reconnecting.
    let changed = false;
    this.outbox = this.outbox.map((it) => {
      if (it.status !== 'sending') return it;
      changed = true;
      this.clearSendTimer(it.client_id);
      return { ...it, status: 'queued' };
    });
    if (changed) this.saveOutbox();
    if (this.stopped) return;
    this.scheduleReconnect();
  }

  private scheduleReconnect(delay?: number): void {
    this.clearRetry();
    if (this.stopped) return;
    if (navigator.onLine === false) {
      this.setState('offline');
      return;
    }
    this.setState(this.connectedOnce ? 'reconnecting' : 'connecting');
    const d =
      delay ?? Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt) * (0.5 + Math.random() * 0.5);
    this.attempt = Math.min(this.attempt + 1, 10);
    this.retryTimer = setTimeout(() => void this.connect(), d);
  }

  // ------------------------------------------------------------ heartbeat

  private startHeartbeat(gen: number): void {
    this.stopHeartbeat();
    this.pingTimer = setInterval(() => {
      if (gen !== this.generation || !this.ws) return;
      this.rawSend({ type: 'ping' });
      if (!this.pongTimer) this.pongTimer = setTimeout(() => this.handleClose(gen), PONG_TIMEOUT_MS);
    }, PING_EVERY_MS);
  }

  private bumpHeartbeat(): void {
    if (this.pongTimer) {
      clearTimeout(this.pongTimer);
      this.pongTimer = null;
    }
  }

  private stopHeartbeat(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.bumpHeartbeat();
  }

  private clearRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  private clearTimers(): void {
    this.clearRetry();
    this.stopHeartbeat();
    this.resetWatches();
    for (const t of this.sendTimers.values()) clearTimeout(t);
    this.sendTimers.clear();
  }

  // ------------------------------------------------------------ frames in

  private handleFrame(f: ServerFrame): void {
    switch (f.type) {
      case 'hello': {
        const epochChanged = this.epoch !== null && this.epoch !== f.epoch;
        if (epochChanged) this.positions.clear();
        this.epoch = f.epoch;
        this.user = f.user;
        this.ownConversation = f.conversation ?? null;
        this.helloSeen = true;
        this.attempt = 0;
        const reconnect = this.connectedOnce;
        this.connectedOnce = true;
        this.setState('open');
        this.frameListeners.forEach((l) => l(f));
        this.connectedListeners.forEach((l) => l({ reconnect, epochChanged }));
        this.flushOutbox();
        return;
      }
      case 'ack': {
        if (f.rid) {
          const item = this.outbox.find((it) => it.client_id === f.rid);
          if (item) {
            this.clearSendTimer(item.client_id);
            this.removeFromOutbox(item.client_id);
            this.sentListeners.forEach((l) => l({ item, seq: f.seq, ts: f.ts }));
          }
          this.settle(f.rid, f);
        }
        break;
      }
      case 'error': {
        if (f.rid && this.watchRids.has(f.rid)) {
          this.watchRefused(f.rid, f.code);
          break;
        }
        if (f.rid) {
          const item = this.outbox.find((it) => it.client_id === f.rid);
          if (item) {
            this.clearSendTimer(item.client_id);
            this.updateOutbox(item.client_id, { status: 'failed', error: f.message });
          }
          const p = this.pending.get(f.rid);
          if (p) {
            this.pending.delete(f.rid);
            clearTimeout(p.timer);
            p.reject(new SocketError(f.code, f.message));
          }
        }
        break;
      }
      default:
        if (!this.helloSeen && f.type !== 'pong') {
          // A server that skips hello still counts as connected.
          this.helloSeen = true;
          this.connectedOnce = true;
          this.setState('open');
        }
        if (isEventFrame(f)) this.trackEvent(f);
        else if (f.type === 'replay') this.watchAnswered(f.conversation);
    }
    this.frameListeners.forEach((l) => l(f));
  }

  private trackEvent(f: EventFrame): void {
    const held = this.positions.get(f.conversation);
    if (held !== undefined && f.pos > held) this.positions.set(f.conversation, f.pos);
    if (f.type === 'message' && f.message.client_id) {
      const item = this.outbox.find((it) => it.client_id === f.message.client_id);
      if (item) {
        this.clearSendTimer(item.client_id);
        this.removeFromOutbox(item.client_id);
      }
    }
  }

  private settle(rid: string, f: ServerFrame): void {
    const p = this.pending.get(rid);
    if (!p) return;
    this.pending.delete(rid);
    clearTimeout(p.timer);
    p.resolve(f);
  }

  private failPending(why: string): void {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new SocketError('unavailable', why === 'closed' ? 'Connection closed.' : 'Connection lost.'));
    }
    this.pending.clear();
  }

  // ------------------------------------------------------------ frames out

  private rawSend(frame: ClientFrame): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  get isOpen(): boolean {
    return this.state === 'open' && !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends a frame that expects an ack or error (edit, delete, react). */
  request(frame: ClientFrame): Promise<ServerFrame> {
    if (!this.isOpen) return Promise.reject(new SocketError('unavailable', 'Not connected. Try again when the connection is back.'));
    const rid = uuid();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new SocketError('unavailable', 'The server did not answer.'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(rid, { resolve, reject, timer });
      this.rawSend({ ...frame, rid });
    });
  }

  /** Fire and forget (typing, delivered, seen); dropped while disconnected. */
  fire(frame: ClientFrame): boolean {
    return this.isOpen && this.rawSend(frame);
  }

  /** Queues a message; it goes out now if connected, else when the connection returns. */
  send(conversation: string, text: string, replyTo?: { seq: number; excerpt: string }): OutboxItem {
    const item: OutboxItem = {
      client_id: uuid(),
      conversation,
      text,
      reply_to: replyTo,
      status: 'queued',
      created: Date.now(),
    };
    this.outbox = [...this.outbox, item];
    this.saveOutbox();
    this.emitChange();
    if (this.isOpen) this.transmit(item);
    return item;
  }

  /** Sends a failed message again with the same client_id, so the server stores it once. */
  retry(clientId: string): void {
    const item = this.outbox.find((it) => it.client_id === clientId);
    if (!item) return;
    this.updateOutbox(clientId, { status: 'queued', error: undefined });
    if (this.isOpen) this.transmit({ ...item, status: 'queued' });
  }

  discard(clientId: string): void {
    this.clearSendTimer(clientId);
    this.removeFromOutbox(clientId);
  }

  private flushOutbox(): void {
    for (const it of this.outbox) if (it.status === 'queued') this.transmit(it);
  }

  private transmit(item: OutboxItem): void {
    const frame: ClientFrame = {
      type: 'send',
      rid: item.client_id,
      conversation: item.conversation,
      client_id: item.client_id,
      text: item.text,
    };
    if (item.reply_to) frame.reply_to = item.reply_to.seq;
    if (!this.rawSend(frame)) return;
    this.updateOutbox(item.client_id, { status: 'sending' });
    this.clearSendTimer(item.client_id);
    this.sendTimers.set(
      item.client_id,
      setTimeout(() => {
        this.sendTimers.delete(item.client_id);
        const cur = this.outbox.find((it) => it.client_id === item.client_id);
        if (cur?.status === 'sending') this.updateOutbox(item.client_id, { status: 'failed', error: 'The server did not answer.' });
      }, SEND_TIMEOUT_MS),
    );
  }

  private clearSendTimer(clientId: string): void {
    const t = this.sendTimers.get(clientId);
    if (t) clearTimeout(t);
    this.sendTimers.delete(clientId);
  }

  private updateOutbox(clientId: string, patch: Partial<OutboxItem>): void {
    this.outbox = this.outbox.map((it) => (it.client_id === clientId ? { ...it, ...patch } : it));
    this.saveOutbox();
    this.emitChange();
  }

  private removeFromOutbox(clientId: string): void {
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((it) => it.client_id !== clientId);
    if (this.outbox.length !== before) {
      this.saveOutbox();
      this.emitChange();
    }
  }

  private loadOutbox(): OutboxItem[] {
    if (!this.opts.storageKey) return [];
    try {
      const raw = sessionStorage.getItem(this.opts.storageKey);
      const items = raw ? (JSON.parse(raw) as OutboxItem[]) : [];
      return items.map((it) => (it.status === 'sending' ? { ...it, status: 'queued' } : it));
    } catch {
      return [];
    }
  }

  private saveOutbox(): void {
    if (!this.opts.storageKey) return;
    try {
      sessionStorage.setItem(this.opts.storageKey, JSON.stringify(this.outbox));
    } catch {
      /* storage full or disabled: the outbox still lives in memory */
    }
  }

  // ------------------------------------------------------------ resume positions

  /**
   * Start tracking a conversation whose history is held up to `pos`. An agent socket
   * watches a conversation from the moment it is tracked: the server replays the
   * events after `pos`, then sends them live.
   */
  track(conversation: string, pos: number): void {
    const held = this.positions.get(conversation);
    if (held === undefined) {
      this.positions.set(conversation, pos);
      this.sendWatch(conversation);
    } else if (pos > held) {
      this.positions.set(conversation, pos);
    }
  }

  /** Forget a conversation (its history was dropped or will be reloaded); an agent stops watching it. */
  untrack(conversation: string): void {
    if (!this.positions.delete(conversation)) return;
    this.forgetWatch(conversation);
    // Not connected: the next resume simply does not name it.
    if (this.watches && this.resumed) this.rawSend({ type: 'unwatch', conversation });
  }

  position(conversation: string): number | undefined {
    return this.positions.get(conversation);
  }

  // ------------------------------------------------------------ watch (agents)

  private get watches(): boolean {
    return !!this.opts.watch && this.user?.kind !== 'customer';
  }

  /** Watches a tracked conversation from its held position (the resume covers it when not connected). */
  private sendWatch(conversation: string): void {
    if (!this.watches || !this.resumed) return;
    const after = this.positions.get(conversation);
    if (after === undefined) return;
    this.forgetWatch(conversation);
    const rid = `watch:${uuid()}`;
    if (this.rawSend({ type: 'watch', rid, conversation, after })) this.watchRids.set(rid, conversation);
  }

  /** The `replay` frame that answers a watch (or the resume) arrived. */
  private watchAnswered(conversation: string): void {
    for (const [rid, c] of this.watchRids) if (c === conversation) this.watchRids.delete(rid);
  }

  private watchRefused(rid: string, code: string): void {
    const conversation = this.watchRids.get(rid)!;
    this.watchRids.delete(rid);
    // not_found, forbidden, invalid: sending it again would not help.
    if (code !== 'rate_limited' && code !== 'unavailable') return;
    if (this.watchRetries.has(conversation)) return;
    this.watchRetries.set(
      conversation,
      setTimeout(() => {
        this.watchRetries.delete(conversation);
        if (this.positions.has(conversation)) this.sendWatch(conversation);
      }, WATCH_RETRY_MS),
    );
  }

  private forgetWatch(conversation: string): void {
    this.watchAnswered(conversation);
    const t = this.watchRetries.get(conversation);
    if (t) clearTimeout(t);
    this.watchRetries.delete(conversation);
  }

  /** The connection ended: the next resume watches everything tracked again. */
  private resetWatches(): void {
    this.resumed = false;
    this.watchRids.clear();
    for (const t of this.watchRetries.values()) clearTimeout(t);
    this.watchRetries.clear();
  }

  // ------------------------------------------------------------ subscriptions

  onFrame(fn: (f: ServerFrame) => void): () => void {
    this.frameListeners.add(fn);
    return () => this.frameListeners.delete(fn);
  }

  onConnected(fn: (e: ConnectedEvent) => void): () => void {
    this.connectedListeners.add(fn);
    return () => this.connectedListeners.delete(fn);
  }

  /** A message of our outbox was acknowledged (the `message` event may come before or after). */
  onSent(fn: (e: SentEvent) => void): () => void {
    this.sentListeners.add(fn);
    return () => this.sentListeners.delete(fn);
  }

  /** State or outbox changed (for useSyncExternalStore). */
  onChange(fn: () => void): () => void {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
  }

  private setState(s: ConnState): void {
    if (this.state === s) return;
    this.state = s;
    this.emitChange();
  }

  private emitChange(): void {
    this.snap = null;
    this.changeListeners.forEach((l) => l());
  }

  private snap: { state: ConnState; outbox: readonly OutboxItem[] } | null = null;

  /** A stable snapshot of state and outbox (same object until something changes). */
  snapshot(): { state: ConnState; outbox: readonly OutboxItem[] } {
    if (!this.snap) this.snap = { state: this.state, outbox: this.outbox };
    return this.snap;
  }
}

/** The message an acknowledged outbox item stands for, until the server's own frame arrives. */
export function provisionalMessage(e: SentEvent, author: UserRef | null): Message {
  return {
    seq: e.seq,
    kind: author?.kind === 'customer' ? 'customer' : 'staff',
    author: author ?? undefined,
    text: e.item.text,
    reply_to: e.item.reply_to,
    ts: e.ts,
    deleted: false,
    reactions: {},
    client_id: e.item.client_id,
  };
}

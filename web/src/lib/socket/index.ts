// The one WebSocket client of the app (console and widget alike). It puts
// together, each in its own module:
// - ./connection: the socket itself (ticket, reconnect with backoff, offline
//   pause, heartbeat);
// - ./positions: resume, the highest event position held per tracked
//   conversation, sent as the FIRST frame of every connection so the server
//   replays what was missed;
// - ./watches: an agent receives a conversation's live events only while it
//   watches it (the tracked conversations are the watched ones);
// - ./outbox: messages typed while offline or not yet acknowledged, sent once
//   per client_id when the connection returns;
// - ./requests: frames waiting for their ack or error.
// Here: what each server frame means for them, the epoch from `hello` (when it
// changes, local state is stale and is dropped), and the listeners.

import { uuid } from '../api';
import type { Attachment, ClientFrame, Message, OutgoingFrame, ServerFrame, UserRef } from '../types';
import { isEventFrame } from '../types';
import { Connection, type ConnState } from './connection';
import { Outbox, type OutboxItem } from './outbox';
import { Positions } from './positions';
import { Requests, SocketError } from './requests';
import { Watches } from './watches';

export type { ConnState } from './connection';
export type { OutboxItem } from './outbox';
export { SocketError } from './requests';

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

export class ChatSocket {
  user: UserRef | null = null;
  /** For a customer: their own conversation (from `hello`). */
  ownConversation: string | null = null;
  epoch: string | null = null;

  private readonly conn: Connection;
  private readonly box: Outbox;
  private readonly positions = new Positions();
  private readonly watches: Watches;
  private readonly requests = new Requests();
  /** The current connection's `hello` (or a first frame standing for it) arrived. */
  private helloSeen = false;
  private frameListeners = new Set<(f: ServerFrame) => void>();
  private connectedListeners = new Set<(e: ConnectedEvent) => void>();
  private sentListeners = new Set<(e: SentEvent) => void>();
  private changeListeners = new Set<() => void>();

  constructor(private readonly opts: SocketOptions) {
    const send = this.rawSend;
    this.conn = new Connection({
      getTicket: opts.getTicket,
      url: opts.url,
      opened: () => this.opened(),
      frame: (f) => this.handleFrame(f),
      closed: () => this.closed(),
      stateChanged: () => this.emitChange(),
      authFailed: () => this.opts.onAuthFailed?.(),
    });
    this.box = new Outbox(opts.storageKey, () => this.emitChange());
    this.watches = new Watches({
      enabled: () => !!this.opts.watch && this.user?.kind !== 'customer',
      position: (c) => this.positions.get(c),
      send,
    });
  }

  get state(): ConnState {
    return this.conn.state;
  }

  get outbox(): readonly OutboxItem[] {
    return this.box.items;
  }

  get isOpen(): boolean {
    return this.conn.isOpen;
  }

  // ------------------------------------------------------------ lifecycle

  start(): void {
    this.conn.start();
  }

  stop(): void {
    this.conn.stop();
    this.watches.reset();
    this.box.clearTimers();
    this.requests.failAll('closed');
    this.conn.setState('closed');
  }

  private opened(): void {
    this.helloSeen = false;
    // Resume must be the first frame of every connection. For an agent it also
    // watches every conversation it names. The epoch the positions belong to:
    // the server answers complete:false when it changed.
    const positions = this.positions.toResume();
    this.rawSend(this.epoch ? { type: 'resume', positions, epoch: this.epoch } : { type: 'resume', positions });
    this.watches.resumeSent();
  }

  private closed(): void {
    this.watches.reset();
    this.requests.failAll('disconnected');
    this.box.requeueSending();
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
        const reconnect = this.conn.greeted();
        this.conn.setState('open');
        this.frameListeners.forEach((l) => l(f));
        this.connectedListeners.forEach((l) => l({ reconnect, epochChanged }));
        this.box.flush(this.rawSend);
        return;
      }
      case 'ack': {
        if (f.rid) {
          const item = this.box.done(f.rid);
          if (item) this.sentListeners.forEach((l) => l({ item, seq: f.seq, ts: f.ts }));
          this.requests.resolve(f.rid, f);
        }
        break;
      }
      case 'error': {
        if (f.rid && this.watches.owns(f.rid)) {
          this.watches.refused(f.rid, f.code);
          break;
        }
        if (f.rid) {
          this.box.failed(f.rid, f.message);
          this.requests.reject(f.rid, f.code, f.message);
        }
        break;
      }
      default:
        if (!this.helloSeen && f.type !== 'pong') {
          // A server that skips hello still counts as connected.
          this.helloSeen = true;
          this.conn.connectedOnce = true;
          this.conn.setState('open');
        }
        if (isEventFrame(f)) {
          this.positions.advance(f);
          // Our own message came back (perhaps before its ack): it is stored.
          if (f.type === 'message' && f.message.client_id) this.box.done(f.message.client_id);
        } else if (f.type === 'replay') this.watches.answered(f.conversation);
    }
    this.frameListeners.forEach((l) => l(f));
  }

  // ------------------------------------------------------------ frames out

  private rawSend = (frame: OutgoingFrame): boolean => this.conn.send(frame);

  /** Sends a frame that expects an ack or error (edit, delete, react). */
  request(frame: ClientFrame): Promise<ServerFrame> {
    if (!this.isOpen) return Promise.reject(new SocketError('unavailable', 'Not connected. Try again when the connection is back.'));
    const rid = uuid();
    return this.requests.wait(rid, () => this.rawSend({ ...frame, rid }));
  }

  /** Fire and forget (typing, delivered, seen); dropped while disconnected. */
  fire(frame: ClientFrame): boolean {
    return this.isOpen && this.rawSend(frame);
  }

  /** Queues a message; it goes out now if connected, else when the connection returns. */
  send(conversation: string, text: string, replyTo?: { seq: number; excerpt: string }, attachments?: Attachment[]): OutboxItem {
    const item = this.box.add(conversation, text, replyTo, attachments);
    if (this.isOpen) this.box.transmit(item, this.rawSend);
    return item;
  }

  /** Sends a failed message again with the same client_id, so the server stores it once. */
  retry(clientId: string): void {
    const item = this.box.requeueOne(clientId);
    if (item && this.isOpen) this.box.transmit(item, this.rawSend);
  }

  discard(clientId: string): void {
    this.box.discard(clientId);
  }

  // ------------------------------------------------------------ resume positions

  /**
   * Start tracking a conversation whose history is held up to `pos`. An agent socket
   * watches a conversation from the moment it is tracked: the server replays the
   * events after `pos`, then sends them live.
   */
  track(conversation: string, pos: number): void {
    if (this.positions.track(conversation, pos)) this.watches.watch(conversation);
  }

  /** Forget a conversation (its history was dropped or will be reloaded); an agent stops watching it. */
  untrack(conversation: string): void {
    if (this.positions.delete(conversation)) this.watches.unwatch(conversation);
  }

  position(conversation: string): number | undefined {
    return this.positions.get(conversation);
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
    attachments: e.item.attachments,
  };
}

// One connection at a time, and the next one: a single-use ticket from
// POST /api/ws-ticket, then /ws?ticket=; reconnect with exponential backoff and
// jitter, paused while the browser is offline; and a heartbeat (ping/pong) so a
// silently dead socket is noticed. It knows frames only as JSON: what a frame
// means is the client's business (./index.ts).

import type { OutgoingFrame, ServerFrame } from '../types';

export type ConnState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'offline' | 'closed';

const PING_EVERY_MS = 20_000;
const PONG_TIMEOUT_MS = 8_000;
const BACKOFF_BASE_MS = 300;
const BACKOFF_MAX_MS = 10_000;

export interface ConnectionHooks {
  /** Fetches a single-use ticket. Throwing an error with status 401 stops for good. */
  getTicket: () => Promise<string>;
  /** Builds the WebSocket URL for a ticket; default: same origin, /ws?ticket=. */
  url?: (ticket: string) => string;
  /** The socket opened: the first frame of the connection goes out here. */
  opened: () => void;
  frame: (f: ServerFrame) => void;
  /** The socket closed (or was given up on); a reconnect follows unless stopped. */
  closed: () => void;
  stateChanged: () => void;
  /** The ticket request was refused with 401: the session ended. */
  authFailed: () => void;
}

export class Connection {
  state: ConnState = 'idle';
  /** A `hello` (or any frame) arrived on some connection of this object. */
  connectedOnce = false;

  private ws: WebSocket | null = null;
  private stopped = true;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private pongTimer: ReturnType<typeof setTimeout> | null = null;
  /** Bumped whenever a socket is given up: callbacks of older sockets do nothing. */
  private generation = 0;

  constructor(private readonly hooks: ConnectionHooks) {}

  get isStopped(): boolean {
    return this.stopped;
  }

  get isOpen(): boolean {
    return this.state === 'open' && !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  setState(s: ConnState): void {
    if (this.state === s) return;
    this.state = s;
    this.hooks.stateChanged();
  }

  /** The server greeted us: the backoff starts over. Returns whether an earlier connection had. */
  greeted(): boolean {
    const before = this.connectedOnce;
    this.attempt = 0;
    this.connectedOnce = true;
    return before;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    void this.connect();
  }

  /** Closes the socket for good (until start); the caller sets the final state. */
  stop(): void {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    this.clearRetry();
    this.stopHeartbeat();
    this.generation++;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(1000, 'bye');
    }
  }

  /** Sends a frame on the open socket; false when there is none. */
  send(frame: OutgoingFrame): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(frame));
    return true;
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
      ticket = await this.hooks.getTicket();
    } catch (e) {
      if (gen !== this.generation || this.stopped) return;
      if ((e as { status?: number }).status === 401) {
        this.stopped = true;
        this.setState('closed');
        this.hooks.authFailed();
        return;
      }
      this.scheduleReconnect();
      return;
    }
    if (gen !== this.generation || this.stopped) return;
    const url = this.hooks.url
      ? this.hooks.url(ticket)
      : `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws?ticket=${encodeURIComponent(ticket)}`;
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (gen !== this.generation) return;
      this.hooks.opened();
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
      this.hooks.frame(frame);
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
    this.hooks.closed();
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

  private startHeartbeat(gen: number): void {
    this.stopHeartbeat();
    this.pingTimer = setInterval(() => {
      if (gen !== this.generation || !this.ws) return;
      this.send({ type: 'ping' });
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
}

// Frames that expect an answer (edit, delete, react): each goes out with a
// fresh rid and waits for the `ack` or `error` that repeats it.

import type { ServerFrame } from '../types';

const REQUEST_TIMEOUT_MS = 10_000;

export class SocketError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'SocketError';
  }
}

interface Pending {
  resolve: (f: ServerFrame) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

export class Requests {
  private pending = new Map<string, Pending>();

  /** Waits for the answer to `rid`; `send` sends the frame once the wait is registered. */
  wait(rid: string, send: () => void): Promise<ServerFrame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new SocketError('unavailable', 'The server did not answer.'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(rid, { resolve, reject, timer });
      send();
    });
  }

  /** An `ack` answered `rid`. */
  resolve(rid: string, f: ServerFrame): void {
    const p = this.take(rid);
    p?.resolve(f);
  }

  /** An `error` answered `rid`. */
  reject(rid: string, code: string, message: string): void {
    const p = this.take(rid);
    p?.reject(new SocketError(code, message));
  }

  /** The connection closed or was lost: nothing pending will be answered. */
  failAll(why: 'closed' | 'disconnected'): void {
    for (const [, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new SocketError('unavailable', why === 'closed' ? 'Connection closed.' : 'Connection lost.'));
    }
    this.pending.clear();
  }

  private take(rid: string): Pending | undefined {
    const p = this.pending.get(rid);
    if (!p) return undefined;
    this.pending.delete(rid);
    clearTimeout(p.timer);
    return p;
  }
}

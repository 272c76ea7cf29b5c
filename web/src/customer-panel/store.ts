// The customer panel's data, read through one store as the chat list and the
// conversation are: the profile and balance, and the four loyalty sections
// (loading, error, items per section). A section is fetched when first opened,
// and again when it goes stale while open: Refresh, a newer balance
// (Transactions) or an order card or update in this customer's conversation
// (the order sections). The balance keeps the highest version it has seen, from
// REST answers and `points` frames alike. When the loyalty service is down the
// profile still loads with `points: null`, and the balance shows as unavailable.

import { ApiError, request } from '../lib/api';
import type { ChatSocket } from '../lib/socket';
import type { Customer, LedgerEntry, Order, PointsOutcome, ServerFrame, Voucher } from '../lib/types';

export type SectionKey = 'vouchers' | 'activeOrders' | 'recentOrders' | 'transactions';
export const SECTION_KEYS: readonly SectionKey[] = ['vouchers', 'activeOrders', 'recentOrders', 'transactions'];

export type SectionItem = Voucher | Order | LedgerEntry;

export interface SectionState {
  open: boolean;
  status: 'idle' | 'loading' | 'ready' | 'error';
  items: readonly SectionItem[];
  /** Paged sections (Transactions): the cursor of the next page, null when there is none. */
  cursor: string | null;
  error?: string;
  loadingMore?: boolean;
}

export interface Balance {
  points: number;
  version: number | null;
}

export interface PanelState {
  /** The profile: loading until the first answer; error only when it never loaded. */
  status: 'loading' | 'ready' | 'error';
  customer: Customer | null;
  /** null while loading, and when the loyalty service cannot answer. */
  balance: Balance | null;
  loadError: string | null;
  /** A Refresh is running. */
  refreshing: boolean;
  sections: Readonly<Record<SectionKey, SectionState>>;
}

/** Whether `next` may replace `cur`: frames of concurrent actions arrive out of order, the highest version wins. */
export function newerBalance(cur: Balance | null, next: Balance): boolean {
  if (!cur) return true;
  if (next.version === null || cur.version === null) return true;
  return next.version > cur.version;
}

/** What a failed panel request shows. */
export function panelError(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 501 || e.status === 405) return 'Not available yet.';
    if (e.status === 404) return 'This customer is not known to the shop.';
    if (e.status === 503) return 'The loyalty service is not answering right now.';
    if (e.status === 0) return 'The server cannot be reached.';
    return capitalize(e.message);
  }
  return 'Something went wrong.';
}

export function capitalize(s: string): string {
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

const idleSection = (): SectionState => ({ open: false, status: 'idle', items: [], cursor: null });

export class CustomerPanelStore {
  private state: PanelState = {
    status: 'loading',
    customer: null,
    balance: null,
    loadError: null,
    refreshing: false,
    sections: { vouchers: idleSection(), activeOrders: idleSection(), recentOrders: idleSection(), transactions: idleSection() },
  };
  private listeners = new Set<() => void>();
  private unsubs: (() => void)[] = [];
  private profileGen = 0;
  /** Per section: bumped by each full load, so an overtaken answer is dropped. */
  private sectionGen: Record<SectionKey, number> = { vouchers: 0, activeOrders: 0, recentOrders: 0, transactions: 0 };
  /** Per section: how often it went stale, and the count its items were loaded for. */
  private wanted: Record<SectionKey, number> = { vouchers: 0, activeOrders: 0, recentOrders: 0, transactions: 0 };
  private loadedFor: Record<SectionKey, number | null> = { vouchers: null, activeOrders: null, recentOrders: null, transactions: null };
  private readonly base: string;

  constructor(
    private readonly socket: ChatSocket,
    readonly id: string,
    private readonly token: () => string | null,
  ) {
    this.base = `/api/customers/${encodeURIComponent(id)}`;
  }

  /** Loads the profile and follows live frames; dispose() undoes it. */
  start(): void {
    this.dispose();
    this.unsubs.push(
      this.socket.onFrame((f) => this.onFrame(f)),
      // After a reconnect, frames may have been missed: read the balance again.
      this.socket.onConnected((e) => void (e.reconnect && this.loadProfile())),
    );
    void this.loadProfile();
  }

  dispose(): void {
    this.unsubs.forEach((u) => u());
    this.unsubs = [];
  }

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  getSnapshot = (): PanelState => this.state;

  private set(patch: Partial<PanelState>): void {
    this.state = { ...this.state, ...patch };
    this.listeners.forEach((l) => l());
  }

  private setSection(key: SectionKey, patch: Partial<SectionState> | ((s: SectionState) => SectionState)): void {
    const cur = this.state.sections[key];
    const next = typeof patch === 'function' ? patch(cur) : { ...cur, ...patch };
    this.set({ sections: { ...this.state.sections, [key]: next } });
  }

  // ------------------------------------------------------------ profile and balance

  async loadProfile(): Promise<void> {
    const my = ++this.profileGen;
    try {
      const c = await request<Customer>(this.base, { token: this.token() });
      if (my !== this.profileGen) return;
      let balance = this.state.balance;
      if (typeof c.points === 'number' && !c.points_unavailable) {
        const next = { points: c.points, version: c.points_version ?? null };
        if (newerBalance(balance, next)) balance = next;
      } else {
        // The loyalty service is down: show that rather than a stale number.
        balance = null;
      }
      this.set({ customer: c, balance, status: 'ready', loadError: null });
    } catch (e) {
      if (my !== this.profileGen) return;
      this.set({
        status: this.state.status === 'ready' ? 'ready' : 'error',
        loadError: `The customer could not be loaded: ${panelError(e)}`,
      });
    }
  }

  /** Takes a balance if it is newer than the one shown; a taken one makes Transactions stale. */
  private offerBalance(next: Balance): void {
    if (!newerBalance(this.state.balance, next)) return;
    this.set({ balance: next });
    this.stale('transactions');
  }

  private onFrame(f: ServerFrame): void {
    if (f.type === 'points' && f.customer === this.id) {
      this.offerBalance({ points: f.balance, version: f.version ?? null });
    } else if (f.type === 'presence' && f.customer === this.id) {
      const c = this.state.customer;
      if (c) this.set({ customer: { ...c, online: f.online } });
    } else if ((f.type === 'order' || (f.type === 'message' && f.message.kind === 'order')) && f.conversation === this.id) {
      // A customer's conversation id is the customer id: a new card or a card update.
      this.stale('activeOrders');
      this.stale('recentOrders');
    }
  }

  /** Refresh: the profile again, and every section (the open ones now, the others when opened). */
  async refresh(): Promise<void> {
    this.set({ refreshing: true });
    for (const key of SECTION_KEYS) this.stale(key);
    try {
      await this.loadProfile();
    } finally {
      this.set({ refreshing: false });
    }
  }

  // ------------------------------------------------------------ points actions

  /** Give Points; `idempotencyKey`: one per dialog, so a retried request never awards twice. */
  async givePoints(amount: number, reason: string, idempotencyKey: string): Promise<PointsOutcome> {
    const r = await request<PointsOutcome>(`${this.base}/points`, {
      body: reason ? { amount, reason } : { amount },
      token: this.token(),
      headers: { 'Idempotency-Key': idempotencyKey },
    });
    this.offerBalance({ points: r.balance, version: r.version ?? null });
    return r;
  }

  /** Reset Balance (a zero balance answers `noop`). */
  async resetBalance(idempotencyKey: string): Promise<PointsOutcome> {
    const r = await request<PointsOutcome>(`${this.base}/points/reset`, {
      method: 'POST',
      body: {},
      token: this.token(),
      headers: { 'Idempotency-Key': idempotencyKey },
    });
    this.offerBalance({ points: r.balance, version: r.version ?? null });
    return r;
  }

  // ------------------------------------------------------------ sections

  setOpen(key: SectionKey, open: boolean): void {
    this.setSection(key, { open });
    if (open) this.loadIfStale(key);
  }

  /** Loads the section's first page again now (Try again). */
  retry(key: SectionKey): void {
    void this.loadSection(key, null);
  }

  loadMore(key: SectionKey): void {
    const cursor = this.state.sections[key].cursor;
    if (cursor) void this.loadSection(key, cursor);
  }

  private stale(key: SectionKey): void {
    this.wanted[key]++;
    this.loadIfStale(key);
  }

  private loadIfStale(key: SectionKey): void {
    if (!this.state.sections[key].open || this.loadedFor[key] === this.wanted[key]) return;
    this.loadedFor[key] = this.wanted[key];
    void this.loadSection(key, null);
  }

  private url(key: SectionKey): string {
    switch (key) {
      case 'vouchers':
        return `${this.base}/vouchers`;
      case 'activeOrders':
        return `${this.base}/orders?state=active`;
      case 'recentOrders':
        return `${this.base}/orders?state=recent`;
      case 'transactions':
        return `${this.base}/transactions`;
    }
  }

  /**
   * A first page (cursor null) replaces the items, but keeps them on screen until
   * the new ones arrive; a later page is appended, without items already held.
   */
  private async loadSection(key: SectionKey, cursor: string | null): Promise<void> {
    const my = cursor ? this.sectionGen[key] : ++this.sectionGen[key];
    const paged = key === 'transactions';
    if (cursor) this.setSection(key, { loadingMore: true });
    else this.setSection(key, (s) => (s.status === 'ready' ? s : { ...s, status: 'loading', error: undefined }));
    try {
      const url = this.url(key);
      const sep = url.includes('?') ? '&' : '?';
      const r = await request<{ items?: SectionItem[]; next_cursor?: string | null }>(
        cursor ? `${url}${sep}cursor=${encodeURIComponent(cursor)}` : url,
        { token: this.token() },
      );
      if (my !== this.sectionGen[key]) return;
      this.setSection(key, (s) => ({
        open: s.open,
        status: 'ready',
        items: cursor ? [...s.items, ...(r.items ?? []).filter((x) => !s.items.some((y) => y.id === x.id))] : (r.items ?? []),
        cursor: paged ? (r.next_cursor ?? null) : null,
      }));
    } catch (e) {
      if (my !== this.sectionGen[key]) return;
      if (cursor) this.setSection(key, { loadingMore: false, error: panelError(e) });
      else this.setSection(key, (s) => ({ open: s.open, status: 'error', items: [], cursor: null, error: panelError(e) }));
    }
  }
}

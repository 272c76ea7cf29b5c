// The chat list: cursor pages over REST, kept live by the `conversation` rows the
// worker pushes. Only loaded rows are held (the list may have 100,000 entries);
// a live row is placed by last_ts among them, or left for a later page.

import { request, query, ApiError } from '../lib/api';
import type { ChatSocket } from '../lib/socket';
import type { ConversationRow, ServerFrame } from '../lib/types';

export interface ListState {
  rows: readonly ConversationRow[];
  total: number | null;
  nextCursor: string | null;
  loading: boolean;
  loadingMore: boolean;
  error: string | null;
  search: string;
  unreadOnly: boolean;
  /** Conversations with unread messages (the server's count, kept current by live rows). */
  unreadConversations: number;
}

interface Page {
  total: number;
  unread_conversations?: number;
  items: ConversationRow[];
  next_cursor: string | null;
}

const PAGE = 50;

/** A live row arrived; `prevUnread`: the unread count last seen for it (page or row), if any. */
export interface RowEvent {
  row: ConversationRow;
  prevUnread: number | undefined;
}

export class ChatListStore {
  private state: ListState = {
    rows: [],
    total: null,
    nextCursor: null,
    loading: false,
    loadingMore: false,
    error: null,
    search: '',
    unreadOnly: false,
    unreadConversations: 0,
  };
  private listeners = new Set<() => void>();
  private rowListeners = new Set<(e: RowEvent) => void>();
  private unread = new Map<string, number>();
  private loadGen = 0;
  private searchTimer: ReturnType<typeof setTimeout> | null = null;
  private totalTimer: ReturnType<typeof setTimeout> | null = null;
  private unsubs: (() => void)[] = [];
  /** The open conversation stays in the list even when it stops matching "unread only". */
  selected: string | null = null;

  constructor(
    socket: ChatSocket,
    private readonly token: () => string | null,
  ) {
    this.unsubs.push(
      socket.onFrame((f) => this.onFrame(f)),
      socket.onConnected((e) => {
        // Rows pushed while we were away are not replayed: take the first page again.
        if (e.reconnect || e.epochChanged) void this.reload(false);
      }),
    );
  }

  dispose(): void {
    this.unsubs.forEach((u) => u());
    if (this.searchTimer) clearTimeout(this.searchTimer);
    if (this.totalTimer) clearTimeout(this.totalTimer);
  }

  get snapshot(): ListState {
    return this.state;
  }

  subscribe = (fn: () => void): (() => void) => {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  };

  getSnapshot = (): ListState => this.state;

  /** Every live `conversation` row, with the unread count known before it (for alerts). */
  onRow(fn: (e: RowEvent) => void): () => void {
    this.rowListeners.add(fn);
    return () => this.rowListeners.delete(fn);
  }

  private set(patch: Partial<ListState>): void {
    this.state = { ...this.state, ...patch };
    this.listeners.forEach((l) => l());
  }

  start(): void {
    if (!this.state.loading && this.state.total === null) void this.reload(true);
  }

  setSearch(search: string): void {
    this.set({ search });
    if (this.searchTimer) clearTimeout(this.searchTimer);
    this.searchTimer = setTimeout(() => void this.reload(true), 200);
  }

  setUnreadOnly(unreadOnly: boolean): void {
    this.set({ unreadOnly });
    void this.reload(true);
  }

  private filterQuery(extra: Record<string, string | number | undefined>) {
    return query({
      search: this.state.search.trim() || undefined,
      unread_only: this.state.unreadOnly ? 'true' : undefined,
      ...extra,
    });
  }

  async reload(clear: boolean): Promise<void> {
    const gen = ++this.loadGen;
    this.set(clear ? { loading: true, error: null, rows: [], nextCursor: null } : { loading: true, error: null });
    try {
      const page = await request<Page>(`/api/conversations${this.filterQuery({ limit: PAGE })}`, { token: this.token() });
      if (gen !== this.loadGen) return;
      for (const r of page.items) this.unread.set(r.id, r.unread);
      this.set({
        rows: page.items,
        total: page.total,
        nextCursor: page.next_cursor ?? null,
        loading: false,
        unreadConversations: page.unread_conversations ?? this.countUnread(),
      });
    } catch (e) {
      if (gen !== this.loadGen) return;
      this.set({
        loading: false,
        error: e instanceof ApiError && e.status === 0 ? 'Cannot reach the server.' : 'The conversations could not be loaded.',
      });
    }
  }

  async loadMore(): Promise<void> {
    const { nextCursor, loadingMore, loading } = this.state;
    if (!nextCursor || loadingMore || loading) return;
    const gen = this.loadGen;
    this.set({ loadingMore: true });
    try {
      const page = await request<Page>(`/api/conversations${this.filterQuery({ limit: PAGE, cursor: nextCursor })}`, {
        token: this.token(),
      });
      if (gen !== this.loadGen) return;
      const have = new Set(this.state.rows.map((r) => r.id));
      for (const r of page.items) this.unread.set(r.id, r.unread);
      this.set({
        rows: [...this.state.rows, ...page.items.filter((r) => !have.has(r.id))],
        nextCursor: page.next_cursor ?? null,
        total: page.total ?? this.state.total,
        loadingMore: false,
        unreadConversations: page.unread_conversations ?? this.state.unreadConversations,
      });
    } catch {
      if (gen === this.loadGen) this.set({ loadingMore: false });
    }
  }

  /** The agent opened a conversation: its unread count goes to zero (the server confirms with a row). */
  markRead(id: string): void {
    if (!this.unread.get(id)) return;
    this.unread.set(id, 0);
    this.set({
      rows: this.state.rows.map((r) => (r.id === id ? { ...r, unread: 0 } : r)),
      unreadConversations: Math.max(0, this.state.unreadConversations - 1),
    });
  }

  private countUnread(): number {
    let n = 0;
    for (const v of this.unread.values()) if (v > 0) n++;
    return n;
  }

  private matches(r: ConversationRow): boolean {
    const q = this.state.search.trim().toLowerCase();
    // The server matches a username prefix.
    if (q && !r.customer.username.toLowerCase().startsWith(q)) return false;
    if (this.state.unreadOnly && r.unread === 0 && r.id !== this.selected) return false;
    return true;
  }

  private onFrame(f: ServerFrame): void {
    if (f.type === 'conversation') {
      const { type: _t, ...row } = f;
      void _t;
      this.upsert(row);
    }
  }

  private upsert(row: ConversationRow): void {
    const rows = this.state.rows;
    const i = rows.findIndex((r) => r.id === row.id);
    const prev = i >= 0 ? rows[i] : undefined;
    const known = this.unread.get(row.id);
    this.unread.set(row.id, row.unread);
    let unreadConversations = this.state.unreadConversations;
    if (known === undefined) this.scheduleTotal();
    else unreadConversations += (row.unread > 0 ? 1 : 0) - (known > 0 ? 1 : 0);
    const next = rows.slice();
    if (i >= 0) next.splice(i, 1);
    if (this.matches(row)) {
      if (prev && prev.last_ts === row.last_ts) {
        next.splice(i, 0, row); // only the unread count changed: stay in place
      } else {
        // Newest first; a row older than everything loaded belongs to a later page.
        let at = next.findIndex((r) => r.last_ts <= row.last_ts);
        if (at < 0) at = this.state.nextCursor ? -1 : next.length;
        if (at >= 0) next.splice(at, 0, row);
      }
    }
    this.set({ rows: next, unreadConversations: Math.max(0, unreadConversations) });
    this.rowListeners.forEach((l) => l({ row, prevUnread: known }));
  }

  /** A row we did not hold may be a new conversation: ask the server for the total again. */
  private scheduleTotal(): void {
    if (this.totalTimer) return;
    this.totalTimer = setTimeout(async () => {
      this.totalTimer = null;
      try {
        const page = await request<Page>(`/api/conversations${this.filterQuery({ limit: 1 })}`, { token: this.token() });
        this.set({ total: page.total, unreadConversations: page.unread_conversations ?? this.state.unreadConversations });
      } catch {
        /* keep the old total */
      }
    }, 1000);
  }
}

import { useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { useVirtualizer } from '@tanstack/react-virtual';
import type { ChatListStore } from './store';
import type { ConversationRow } from '../lib/types';
import { Avatar } from '../common/Avatar';
import { badge, fullTime, listTime } from '../common/format';
import { SearchIcon } from '../common/icons';

const ROW_HEIGHT = 72;

export interface ChatListProps {
  store: ChatListStore;
  selected: string | null;
  onOpen: (id: string) => void;
}

/** "Customer Chats": search, unread filter and a virtualised list of cursor pages. */
export function ChatList({ store, selected, onOpen }: ChatListProps) {
  const list = useSyncExternalStore(store.subscribe, store.getSnapshot);
  const scroller = useRef<HTMLDivElement>(null);
  const [active, setActive] = useState(0);
  const [, tick] = useState(0);

  useEffect(() => {
    store.selected = selected;
  }, [store, selected]);

  // Relative timestamps ("Mon", "10:42") drift: re-render once a minute.
  useEffect(() => {
    const t = setInterval(() => tick((n) => n + 1), 60_000);
    return () => clearInterval(t);
  }, []);

  const rows = list.rows;
  const hasMore = !!list.nextCursor;
  const virtual = useVirtualizer({
    count: rows.length + (hasMore ? 1 : 0),
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 8,
  });
  const items = virtual.getVirtualItems();

  // Reaching the loader row fetches the next page.
  const last = items[items.length - 1];
  useEffect(() => {
    if (last && last.index >= rows.length - 5 && hasMore) void store.loadMore();
  }, [last?.index, rows.length, hasMore, store]);

  // The keyboard cursor follows the open conversation.
  useEffect(() => {
    const i = rows.findIndex((r) => r.id === selected);
    if (i >= 0) setActive(i);
  }, [selected, rows]);

  const activeIndex = Math.min(active, Math.max(rows.length - 1, 0));

  const onKeyDown = (e: React.KeyboardEvent) => {
    if (!rows.length) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const next = Math.max(0, Math.min(rows.length - 1, activeIndex + (e.key === 'ArrowDown' ? 1 : -1)));
      setActive(next);
      virtual.scrollToIndex(next, { align: 'auto' });
    } else if (e.key === 'Home' || e.key === 'End') {
      e.preventDefault();
      const next = e.key === 'Home' ? 0 : rows.length - 1;
      setActive(next);
      virtual.scrollToIndex(next, { align: 'auto' });
    } else if (e.key === 'Enter') {
      e.preventDefault();
      const r = rows[activeIndex];
      if (r) onOpen(r.id);
    }
  };

  return (
    <div className="chat-list">
      <header className="chat-list-header">
        <h1>
          Customer Chats{' '}
          <span className="count" aria-label={`${list.total ?? 0} conversations`} data-testid="total-count">
            {list.total === null ? '…' : list.total.toLocaleString()}
          </span>
        </h1>
        <div className="search">
          <SearchIcon />
          <input
            type="search"
            placeholder="Search by username"
            aria-label="Search by username"
            value={list.search}
            onChange={(e) => store.setSearch(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === 'ArrowDown') {
                e.preventDefault();
                scroller.current?.focus();
              }
            }}
          />
        </div>
        <label className="toggle">
          <input type="checkbox" role="switch" checked={list.unreadOnly} onChange={(e) => store.setUnreadOnly(e.target.checked)} />
          <span className="toggle-track" aria-hidden="true">
            <span className="toggle-thumb" />
          </span>
          Show unread only
        </label>
      </header>
      <div
        className="chat-rows"
        ref={scroller}
        tabIndex={0}
        role="listbox"
        aria-label="Conversations"
        aria-activedescendant={rows[activeIndex] ? `row-${rows[activeIndex].id}` : undefined}
        onKeyDown={onKeyDown}
      >
        {list.error && (
          <div className="list-note error">
            {list.error}{' '}
            <button type="button" className="link" onClick={() => void store.reload(false)}>
              Try again
            </button>
          </div>
        )}
        {!list.error && !list.loading && rows.length === 0 && (
          <div className="list-note">{list.search || list.unreadOnly ? 'No conversations match.' : 'No conversations yet.'}</div>
        )}
        {list.loading && rows.length === 0 && <div className="list-note">Loading conversations…</div>}
        <div style={{ height: virtual.getTotalSize(), position: 'relative' }}>
          {items.map((v) => {
            const r = rows[v.index];
            return (
              <div key={r ? r.id : 'loader'} className="virtual-row" style={{ transform: `translateY(${v.start}px)`, height: ROW_HEIGHT }}>
                {r ? (
                  <Row row={r} selected={r.id === selected} active={v.index === activeIndex} onOpen={onOpen} />
                ) : (
                  <div className="list-note">Loading more…</div>
                )}
              </div>
            );
          })}
        </div>
      </div>
    </div>
  );
}

function Row({ row, selected, active, onOpen }: { row: ConversationRow; selected: boolean; active: boolean; onOpen: (id: string) => void }) {
  return (
    <div
      id={`row-${row.id}`}
      role="option"
      aria-selected={selected}
      className={`chat-row${selected ? ' selected' : ''}${active ? ' active' : ''}${row.unread ? ' has-unread' : ''}`}
      data-conversation={row.id}
      data-username={row.customer.username}
      onClick={() => onOpen(row.id)}
    >
      <Avatar name={row.customer.username} url={row.customer.avatar_url} size={44} />
      <div className="row-main">
        <div className="row-top">
          <span className="row-name">{row.customer.username}</span>
          <time className="row-time" title={row.last_ts ? fullTime(row.last_ts) : undefined}>
            {listTime(row.last_ts)}
          </time>
        </div>
        <div className="row-bottom">
          <span className="row-preview">{row.preview || '\u00a0'}</span>
          {row.unread > 0 && (
            <span className="unread-badge" aria-label={`${row.unread} unread`} data-testid="unread-badge">
              {badge(row.unread)}
            </span>
          )}
        </div>
      </div>
    </div>
  );
}

import { useEffect, useRef, useState } from 'react';
import { ApiError, request } from '../lib/api';
import type { LedgerEntry, Order, Voucher } from '../lib/types';
import { fullTime, listTime, shortDate } from '../common/format';
import { ORDER_LABEL, price } from '../conversation/OrderCard';

export type SectionKind = 'voucher' | 'order' | 'transaction';
type Item = Voucher | Order | LedgerEntry;

interface SectionState {
  status: 'idle' | 'loading' | 'ready' | 'error';
  items: Item[];
  cursor: string | null;
  error?: string;
  loadingMore?: boolean;
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

/**
 * An expandable section. It fetches on first expand, and again whenever `refreshKey`
 * changes while it is open (Refresh, or a live order/points event for this customer).
 * A refresh keeps the items on screen until the new ones arrive; an answer that was
 * overtaken by a newer request is dropped.
 */
export function Section({
  title,
  url,
  token,
  refreshKey,
  kind,
  paged,
}: {
  title: string;
  url: string;
  token: string;
  refreshKey: string;
  kind: SectionKind;
  paged?: boolean;
}) {
  const [open, setOpen] = useState(false);
  const [state, setState] = useState<SectionState>({ status: 'idle', items: [], cursor: null });
  const loadedFor = useRef<string | null>(null);
  const gen = useRef(0);
  const bodyId = `section-${title.replace(/\W+/g, '-').toLowerCase()}`;

  const load = async (cursor: string | null) => {
    const my = cursor ? gen.current : ++gen.current;
    if (cursor) setState((s) => ({ ...s, loadingMore: true }));
    else setState((s) => (s.status === 'ready' ? s : { ...s, status: 'loading', error: undefined }));
    try {
      const sep = url.includes('?') ? '&' : '?';
      const r = await request<{ items?: Item[]; next_cursor?: string | null }>(cursor ? `${url}${sep}cursor=${encodeURIComponent(cursor)}` : url, { token });
      if (my !== gen.current) return;
      setState((s) => ({
        status: 'ready',
        items: cursor ? [...s.items, ...(r.items ?? []).filter((x) => !s.items.some((y) => y.id === x.id))] : (r.items ?? []),
        cursor: paged ? (r.next_cursor ?? null) : null,
      }));
    } catch (e) {
      if (my !== gen.current) return;
      if (cursor) setState((s) => ({ ...s, loadingMore: false, error: panelError(e) }));
      else setState({ status: 'error', items: [], cursor: null, error: panelError(e) });
    }
  };

  useEffect(() => {
    if (!open || loadedFor.current === refreshKey) return;
    loadedFor.current = refreshKey;
    void load(null);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [open, refreshKey]);

  const count = state.status === 'ready' ? `${state.items.length}${state.cursor ? '+' : ''}` : null;

  return (
    <div className={`section${open ? ' open' : ''}`} data-status={state.status}>
      <button type="button" className="section-toggle" aria-expanded={open} aria-controls={bodyId} onClick={() => setOpen((o) => !o)}>
        <span>{title}</span>
        {count !== null && <span className="section-count">{count}</span>}
        <span className="chevron" aria-hidden="true" />
      </button>
      {open && (
        <div className="section-body" id={bodyId}>
          {state.status === 'loading' && <div className="panel-note">Loading…</div>}
          {state.status === 'error' && (
            <div className="panel-note error">
              {state.error ?? 'Could not load.'}{' '}
              <button type="button" className="link" onClick={() => void load(null)}>
                Try again
              </button>
            </div>
          )}
          {state.status === 'ready' && state.items.length === 0 && <div className="panel-note muted">{EMPTY[kind][title] ?? 'Nothing here.'}</div>}
          {state.status === 'ready' && state.items.length > 0 && (
            <ul className="section-items">
              {state.items.map((it, i) => (
                <li key={String(it.id ?? i)} data-id={String(it.id ?? '')}>
                  {renderItem(kind, it)}
                </li>
              ))}
            </ul>
          )}
          {state.status === 'ready' && state.error && <div className="panel-note error">{state.error}</div>}
          {state.status === 'ready' && state.cursor && (
            <button type="button" className="link load-more" disabled={state.loadingMore} onClick={() => void load(state.cursor)}>
              {state.loadingMore ? 'Loading…' : 'Load more'}
            </button>
          )}
        </div>
      )}
    </div>
  );
}

const EMPTY: Record<SectionKind, Record<string, string>> = {
  voucher: { Vouchers: 'No active vouchers.' },
  order: { 'Active Orders': 'No orders in progress.', 'Recent Orders': 'No recent orders.' },
  transaction: { Transactions: 'No transactions yet.' },
};

const KIND_LABEL: Record<string, string> = { earned: 'Earned', spent: 'Spent', awarded: 'Awarded', reset: 'Reset' };

function renderItem(kind: SectionKind, it: Item) {
  if (kind === 'voucher') {
    const v = it as Voucher;
    return (
      <div className="item voucher">
        <div className="item-main">
          <strong>{v.title || v.code || 'Voucher'}</strong>
        </div>
        <div className="item-sub muted">
          {v.code && <code className="voucher-code">{v.code}</code>}
          {typeof v.expires_at === 'number' && (
            <span title={fullTime(v.expires_at)}>
              {v.code ? ' · ' : ''}expires {shortDate(v.expires_at)}
            </span>
          )}
        </div>
      </div>
    );
  }
  if (kind === 'order') {
    const o = it as Order;
    const items = Array.isArray(o.items) ? o.items : [];
    const status = (o.status ?? '').toLowerCase();
    const at = o.updated_at ?? o.placed_at ?? o.ts;
    return (
      <div className="item order" data-status={status}>
        <div className="item-main">
          <strong>Order #{o.id ?? o.order_id}</strong> <span className={`order-status status-${status}`}>{ORDER_LABEL[status] ?? status}</span>
        </div>
        {items.length > 0 && <div className="item-sub">{items.map((x) => `${x.qty ?? x.quantity ?? 1}× ${x.name ?? 'Item'}`).join(', ')}</div>}
        <div className="item-sub muted">
          {o.total !== undefined && <span>Total {price(o.total, o.currency)}</span>}
          {typeof at === 'number' && (
            <span title={fullTime(at)}>
              {o.total !== undefined ? ' · ' : ''}
              {listTime(at)}
            </span>
          )}
        </div>
      </div>
    );
  }
  const t = it as LedgerEntry;
  const amount = Number(t.amount ?? 0);
  const by = t.by ? (t.by.display_name ?? t.by.username) : null;
  return (
    <div className="item transaction" data-kind={t.kind}>
      <div className="item-main">
        <strong className={amount < 0 ? 'neg' : 'pos'}>
          {amount > 0 ? '+' : ''}
          {amount.toLocaleString()}
        </strong>{' '}
        <span>{KIND_LABEL[t.kind] ?? t.kind}</span>
        {typeof t.balance_after === 'number' && <span className="muted item-balance"> → {t.balance_after.toLocaleString()}</span>}
      </div>
      <div className="item-sub muted">
        {[t.reason, by && `by ${by}`].filter(Boolean).join(' · ')}
        {typeof t.ts === 'number' && (
          <span title={fullTime(t.ts)}>
            {t.reason || by ? ' · ' : ''}
            {listTime(t.ts)}
          </span>
        )}
      </div>
    </div>
  );
}

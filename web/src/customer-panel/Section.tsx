import type { LedgerEntry, Order, Voucher } from '../lib/types';
import { fullTime, listTime, shortDate } from '../common/format';
import { ORDER_LABEL, price } from '../conversation/OrderCard';
import type { CustomerPanelStore, SectionItem, SectionKey, SectionState } from './store';

export type SectionKind = 'voucher' | 'order' | 'transaction';
type Item = SectionItem;

/**
 * An expandable section; its data is the store's (./store.ts), which fetches on
 * first expand and again when the section goes stale while open. A refresh keeps
 * the items on screen until the new ones arrive.
 */
export function Section({
  title,
  kind,
  sectionKey,
  state,
  store,
}: {
  title: string;
  kind: SectionKind;
  sectionKey: SectionKey;
  state: SectionState;
  store: CustomerPanelStore;
}) {
  const open = state.open;
  const bodyId = `section-${title.replace(/\W+/g, '-').toLowerCase()}`;
  const count = state.status === 'ready' ? `${state.items.length}${state.cursor ? '+' : ''}` : null;

  return (
    <div className={`section${open ? ' open' : ''}`} data-status={state.status}>
      <button type="button" className="section-toggle" aria-expanded={open} aria-controls={bodyId} onClick={() => store.setOpen(sectionKey, !open)}>
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
              <button type="button" className="link" onClick={() => store.retry(sectionKey)}>
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
            <button type="button" className="link load-more" disabled={state.loadingMore} onClick={() => store.loadMore(sectionKey)}>
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

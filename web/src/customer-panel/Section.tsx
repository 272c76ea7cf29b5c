import { useEffect, useRef, useState } from 'react';
import { ApiError, request } from '../lib/api';
import { fullTime, money } from '../common/format';

type Item = Record<string, unknown>;

/**
 * An expandable section. It fetches on first expand (and on Refresh while open), so a
 * loyalty backend that is not there yet costs nothing until someone looks.
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
  refreshKey: number;
  kind: 'voucher' | 'order' | 'transaction';
  paged?: boolean;
}) {
  const [open, setOpen] = useState(false);
  const [state, setState] = useState<{ status: 'idle' | 'loading' | 'ready' | 'unavailable' | 'error'; items: Item[]; cursor: string | null }>({
    status: 'idle',
    items: [],
    cursor: null,
  });
  const loadedFor = useRef(-1);
  const bodyId = `section-${title.replace(/\W+/g, '-').toLowerCase()}`;

  const load = async (cursor: string | null) => {
    setState((s) => ({ ...s, status: cursor ? s.status : 'loading' }));
    try {
      const sep = url.includes('?') ? '&' : '?';
      const r = await request<{ items?: Item[]; next_cursor?: string | null }>(cursor ? `${url}${sep}cursor=${encodeURIComponent(cursor)}` : url, { token });
      setState((s) => ({
        status: 'ready',
        items: cursor ? [...s.items, ...(r.items ?? [])] : (r.items ?? []),
        cursor: paged ? (r.next_cursor ?? null) : null,
      }));
    } catch (e) {
      setState({ status: e instanceof ApiError && e.notAvailable ? 'unavailable' : 'error', items: [], cursor: null });
    }
  };

  useEffect(() => {
    if (!open || loadedFor.current === refreshKey) return;
    loadedFor.current = refreshKey;
    void load(null);
  }, [open, refreshKey]);

  return (
    <div className={`section${open ? ' open' : ''}`}>
      <button type="button" className="section-toggle" aria-expanded={open} aria-controls={bodyId} onClick={() => setOpen((o) => !o)}>
        <span>{title}</span>
        {state.status === 'ready' && <span className="section-count">{state.items.length}</span>}
        <span className="chevron" aria-hidden="true" />
      </button>
      {open && (
        <div className="section-body" id={bodyId}>
          {state.status === 'loading' && <div className="panel-note">Loading…</div>}
          {state.status === 'unavailable' && <div className="panel-note muted">Not available yet</div>}
          {state.status === 'error' && (
            <div className="panel-note error">
              Could not load.{' '}
              <button type="button" className="link" onClick={() => void load(null)}>
                Try again
              </button>
            </div>
          )}
          {state.status === 'ready' && state.items.length === 0 && <div className="panel-note muted">Nothing here.</div>}
          {state.status === 'ready' && state.items.length > 0 && (
            <ul className="section-items">
              {state.items.map((it, i) => (
                <li key={String(it.id ?? it.order_id ?? it.code ?? i)}>{renderItem(kind, it)}</li>
              ))}
            </ul>
          )}
          {state.cursor && (
            <button type="button" className="link" onClick={() => void load(state.cursor)}>
              Load more
            </button>
          )}
        </div>
      )}
    </div>
  );
}

const str = (v: unknown) => (v === undefined || v === null ? '' : String(v));
const when = (v: unknown) => (typeof v === 'number' ? fullTime(v) : str(v));

function renderItem(kind: 'voucher' | 'order' | 'transaction', it: Item) {
  if (kind === 'voucher') {
    return (
      <div className="item">
        <div className="item-main">
          <strong>{str(it.title ?? it.name ?? it.code ?? 'Voucher')}</strong>
          {it.code !== undefined && it.title !== undefined && <span className="muted"> · {str(it.code)}</span>}
        </div>
        <div className="item-sub muted">
          {it.value !== undefined && <span>{str(it.value)} </span>}
          {it.expires_at !== undefined && <span>expires {when(it.expires_at)}</span>}
        </div>
      </div>
    );
  }
  if (kind === 'order') {
    const items = Array.isArray(it.items) ? (it.items as Item[]) : [];
    return (
      <div className="item">
        <div className="item-main">
          <strong>Order #{str(it.order_id ?? it.id)}</strong> <span className={`order-status status-${str(it.status).toLowerCase()}`}>{str(it.status)}</span>
        </div>
        {items.length > 0 && <div className="item-sub">{items.map((x) => `${str(x.qty ?? x.quantity ?? 1)}× ${str(x.name)}`).join(', ')}</div>}
        <div className="item-sub muted">
          {it.total !== undefined && <span>Total {money(it.total as number)} </span>}
          {it.ts !== undefined && <span>· {when(it.ts)}</span>}
        </div>
      </div>
    );
  }
  const amount = Number(it.amount ?? 0);
  return (
    <div className="item">
      <div className="item-main">
        <strong className={amount < 0 ? 'neg' : 'pos'}>
          {amount > 0 ? '+' : ''}
          {amount.toLocaleString()}
        </strong>{' '}
        <span>{str(it.kind ?? it.type ?? '')}</span>
      </div>
      <div className="item-sub muted">
        {it.reason !== undefined && <span>{str(it.reason)} </span>}
        {it.ts !== undefined && <span>· {when(it.ts)}</span>}
      </div>
    </div>
  );
}

import type { OrderInfo, OrderStep } from '../lib/types';
import { fullTime, listTime, money } from '../common/format';

// Compact order progress card for messages of kind "order". The server sends the
// card with its steps (placed, accepted, preparing, ready, completed; a cancelled
// order: placed, cancelled); `order` frames replace it in place. Older shapes
// without steps are still read: the steps are then derived from the status.

const STEPS = ['placed', 'accepted', 'preparing', 'ready', 'completed'] as const;
export const ORDER_LABEL: Record<string, string> = {
  placed: 'Placed',
  accepted: 'Accepted',
  preparing: 'Preparing',
  ready: 'Ready',
  completed: 'Completed',
  cancelled: 'Cancelled',
};

function derivedSteps(status: string): OrderStep[] {
  if (status === 'cancelled') {
    return [
      { status: 'placed', state: 'done' },
      { status: 'cancelled', state: 'current' },
    ];
  }
  const at = STEPS.indexOf(status as (typeof STEPS)[number]);
  return STEPS.map((s, i) => ({ status: s, state: i < at ? 'done' : i === at ? 'current' : 'todo' }));
}

/** An amount with its currency ("€7.10"), or just the number when the currency is unknown. */
export function price(v: number | string | undefined, currency?: string): string {
  if (v === undefined || v === null || v === '') return '';
  const n = typeof v === 'number' ? v : Number(v);
  if (currency && !Number.isNaN(n)) {
    try {
      return n.toLocaleString(undefined, { style: 'currency', currency });
    } catch {
      return `${money(n)} ${currency}`;
    }
  }
  return money(v);
}

export function OrderCard({ order, text }: { order?: OrderInfo; text?: string }) {
  let status = (order?.status ?? '').toLowerCase();
  if (status === 'canceled') status = 'cancelled';
  const cancelled = status === 'cancelled';
  const steps = Array.isArray(order?.steps) && order!.steps.length ? order!.steps : derivedSteps(status);
  const id = order?.id ?? order?.order_id;
  const items = Array.isArray(order?.items) ? order!.items : [];
  const updated = order?.updated_at ?? order?.ts;
  return (
    <div className={`order-card${cancelled ? ' cancelled' : ''}`} data-status={status || 'unknown'} data-order={id ?? ''}>
      <div className="order-head">
        <span className="order-title">Order{id ? ` #${id}` : ''}</span>
        <span className={`order-status status-${status || 'unknown'}`}>{ORDER_LABEL[status] ?? (status || 'Update')}</span>
      </div>
      <ol className="order-steps" aria-label="Order progress" style={{ gridTemplateColumns: `repeat(${steps.length}, 1fr)` }}>
        {steps.map((s) => (
          <li
            key={s.status}
            className={s.state === 'todo' ? '' : `${s.state}${s.status === 'cancelled' ? ' cancelled' : ''}`}
            data-step={s.status}
            aria-current={s.state === 'current' ? 'step' : undefined}
          >
            <span className="dot" />
            <span className="step-label">{ORDER_LABEL[s.status] ?? s.status}</span>
          </li>
        ))}
      </ol>
      {cancelled && <div className="order-cancelled">This order was cancelled.</div>}
      {items.length > 0 && (
        <ul className="order-items">
          {items.map((it, i) => {
            const qty = it.qty ?? it.quantity ?? 1;
            const unit = it.price === undefined || it.price === null ? undefined : Number(it.price);
            return (
              <li key={i}>
                <span>
                  {qty}× {it.name ?? 'Item'}
                </span>
                {unit !== undefined && !Number.isNaN(unit) && <span>{price(Math.round(unit * qty * 100) / 100, order?.currency)}</span>}
              </li>
            );
          })}
        </ul>
      )}
      {order?.total !== undefined && (
        <div className="order-total">
          <span>Total</span>
          <span>{price(order.total, order.currency)}</span>
        </div>
      )}
      {typeof updated === 'number' && updated > 0 && <div className="order-updated muted" title={fullTime(updated)}>
          Updated {listTime(updated)}
        </div>}
      {!order && text && <div className="order-text">{text}</div>}
    </div>
  );
}

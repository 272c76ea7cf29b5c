import type { OrderInfo } from '../lib/types';
import { money } from '../common/format';

// Compact order progress card for messages of kind "order". The order backend comes
// later; the card reads the fields defensively and shows what is there.

const STEPS = ['placed', 'accepted', 'preparing', 'ready', 'completed'] as const;
const LABEL: Record<string, string> = {
  placed: 'Placed',
  accepted: 'Accepted',
  preparing: 'Preparing',
  ready: 'Ready',
  completed: 'Completed',
  cancelled: 'Cancelled',
};

export function OrderCard({ order, text }: { order?: OrderInfo; text?: string }) {
  const status = (order?.status ?? '').toLowerCase();
  const cancelled = status === 'cancelled' || status === 'canceled';
  const at = STEPS.indexOf(status as (typeof STEPS)[number]);
  const id = order?.order_id ?? order?.id;
  const items = Array.isArray(order?.items) ? order!.items : [];
  return (
    <div className={`order-card${cancelled ? ' cancelled' : ''}`} data-status={status || 'unknown'}>
      <div className="order-head">
        <span className="order-title">Order{id ? ` #${id}` : ''}</span>
        <span className={`order-status status-${cancelled ? 'cancelled' : status || 'unknown'}`}>
          {LABEL[cancelled ? 'cancelled' : status] ?? (status || 'Update')}
        </span>
      </div>
      {cancelled ? (
        <div className="order-cancelled">This order was cancelled.</div>
      ) : (
        <ol className="order-steps" aria-label="Order progress">
          {STEPS.map((s, i) => (
            <li key={s} className={i < at ? 'done' : i === at ? 'current' : ''} aria-current={i === at ? 'step' : undefined}>
              <span className="dot" />
              <span className="step-label">{LABEL[s]}</span>
            </li>
          ))}
        </ol>
      )}
      {items.length > 0 && (
        <ul className="order-items">
          {items.map((it, i) => (
            <li key={i}>
              <span>
                {(it.qty ?? it.quantity ?? 1)}× {it.name ?? 'Item'}
              </span>
              {it.price !== undefined && <span>{money(it.price)}</span>}
            </li>
          ))}
        </ul>
      )}
      {order?.total !== undefined && (
        <div className="order-total">
          <span>Total</span>
          <span>{money(order.total)}</span>
        </div>
      )}
      {!order && text && <div className="order-text">{text}</div>}
    </div>
  );
}

import { useEffect, useState, useSyncExternalStore } from 'react';
import { useServices } from '../console/services';
import { chatPath, navigate } from '../console/router';
import { Avatar } from '../common/Avatar';
import { BackIcon } from '../common/icons';
import { Section } from './Section';
import { PointsDialog, ResetDialog } from './dialogs';
import { CustomerPanelStore, capitalize } from './store';

/**
 * Customer info: profile, points and the loyalty sections (vouchers, orders,
 * transactions), read through a {@link CustomerPanelStore} (./store.ts), which
 * fetches, follows live frames and keeps the highest balance version. The
 * component keeps only what is on screen: the open dialog and the last notice.
 */
export function CustomerPanel({ id }: { id: string }) {
  const s = useServices();
  const list = useSyncExternalStore(s.list.subscribe, s.list.getSnapshot);
  const row = list.rows.find((r) => r.id === id);
  const [store] = useState(() => new CustomerPanelStore(s.socket, id, () => s.session.token));
  const { status, customer, balance, loadError, refreshing, sections } = useSyncExternalStore(store.subscribe, store.getSnapshot);
  const [dialog, setDialog] = useState<'give' | 'reset' | null>(null);
  const [flash, setFlash] = useState<{ text: string; tone: 'success' | 'info' } | null>(null);

  useEffect(() => {
    store.start();
    return () => store.dispose();
  }, [store]);

  useEffect(() => {
    if (!flash) return;
    const t = setTimeout(() => setFlash(null), 8000);
    return () => clearTimeout(t);
  }, [flash]);

  const username = customer?.username ?? row?.customer.username ?? id;
  const unavailable = status === 'ready' && balance === null;

  return (
    <div className="customer-panel">
      <header className="panel-header">
        <button type="button" className="icon-btn back-btn-info" aria-label="Back to conversation" onClick={() => navigate(chatPath(id))}>
          <BackIcon />
        </button>
        <h2>Customer info</h2>
      </header>
      <div className="profile">
        <Avatar name={username} url={customer?.avatar_url ?? row?.customer.avatar_url} size={72} online={customer?.online ?? null} />
        <div className="profile-name">{username}</div>
        <div className="profile-online">{customer ? (customer.online ? 'Online' : 'Offline') : '\u00a0'}</div>
        <div className={`points${unavailable ? ' unavailable' : ''}`} data-testid="points" data-version={balance?.version ?? ''}>
          <span className="points-label">Points balance</span>
          <span className="points-value">
            {balance ? balance.points.toLocaleString() : status === 'loading' ? '…' : unavailable ? 'Unavailable' : '—'}
          </span>
          {unavailable && <span className="points-note">The loyalty service is not answering. Refresh to try again.</span>}
        </div>
        {loadError && <div className="panel-note error">{loadError}</div>}
      </div>
      <div className="quick-actions">
        <button type="button" className="btn danger-outline" onClick={() => setDialog('reset')}>
          Reset Balance
        </button>
        <button
          type="button"
          className="btn"
          disabled={refreshing}
          onClick={() => void store.refresh()}
        >
          {refreshing ? 'Refreshing…' : 'Refresh'}
        </button>
        <button type="button" className="btn primary" onClick={() => setDialog('give')}>
          Give Points
        </button>
      </div>
      {flash && (
        <div className={`panel-note ${flash.tone}`} role="status">
          {flash.text}
        </div>
      )}
      <div className="sections">
        <Section title="Vouchers" kind="voucher" sectionKey="vouchers" state={sections.vouchers} store={store} />
        <Section title="Active Orders" kind="order" sectionKey="activeOrders" state={sections.activeOrders} store={store} />
        <Section title="Recent Orders" kind="order" sectionKey="recentOrders" state={sections.recentOrders} store={store} />
        <Section title="Transactions" kind="transaction" sectionKey="transactions" state={sections.transactions} store={store} />
      </div>
      {dialog === 'give' && (
        <PointsDialog
          username={username}
          onClose={() => setDialog(null)}
          onSubmit={async (amount, reason, key) => {
            await store.givePoints(amount, reason, key);
            setFlash({ text: `Gave ${amount.toLocaleString()} points to ${username}.`, tone: 'success' });
          }}
        />
      )}
      {dialog === 'reset' && (
        <ResetDialog
          username={username}
          balance={balance?.points ?? null}
          onClose={() => setDialog(null)}
          onConfirm={async (key) => {
            const r = await store.resetBalance(key);
            if (r.noop) setFlash({ text: capitalize(r.message ?? 'the balance is already 0: nothing to reset'), tone: 'info' });
            else {
              const removed = r.transaction ? -r.transaction.amount : null;
              setFlash({ text: `${username}'s balance was reset to 0${removed ? ` (${removed.toLocaleString()} points removed)` : ''}.`, tone: 'success' });
            }
          }}
        />
      )}
    </div>
  );
}

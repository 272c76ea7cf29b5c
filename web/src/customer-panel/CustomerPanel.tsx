import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { request } from '../lib/api';
import type { Customer, PointsOutcome } from '../lib/types';
import { useServices } from '../console/services';
import { chatPath, navigate } from '../console/router';
import { Avatar } from '../common/Avatar';
import { BackIcon } from '../common/icons';
import { Section, capitalize, panelError } from './Section';
import { PointsDialog, ResetDialog } from './dialogs';

interface Balance {
  points: number;
  version: number | null;
}

/** Whether `next` may replace `cur`: frames of concurrent actions arrive out of order, the highest version wins. */
export function newerBalance(cur: Balance | null, next: Balance): boolean {
  if (!cur) return true;
  if (next.version === null || cur.version === null) return true;
  return next.version > cur.version;
}

/**
 * Customer info: profile, points and the loyalty sections (vouchers, orders,
 * transactions). Section data is fetched when a section is expanded, and again on
 * Refresh or when a live event says it changed: an order card or update in this
 * customer's conversation refreshes the order sections, a newer balance the
 * transactions. The balance keeps the highest version it has seen (REST answers
 * and `points` frames alike). When the loyalty service is down the profile still
 * loads with `points: null`, shown as "Unavailable".
 */
export function CustomerPanel({ id }: { id: string }) {
  const s = useServices();
  const token = s.session.token;
  const list = useSyncExternalStore(s.list.subscribe, s.list.getSnapshot);
  const row = list.rows.find((r) => r.id === id);
  const [customer, setCustomer] = useState<Customer | null>(null);
  const [balance, setBalance] = useState<Balance | null>(null);
  const [status, setStatus] = useState<'loading' | 'ready' | 'error'>('loading');
  const [loadError, setLoadError] = useState<string | null>(null);
  const [refreshing, setRefreshing] = useState(false);
  const [dialog, setDialog] = useState<'give' | 'reset' | null>(null);
  const [flash, setFlash] = useState<{ text: string; tone: 'success' | 'info' } | null>(null);
  const [refreshKey, setRefreshKey] = useState(0);
  const [ordersKey, setOrdersKey] = useState(0);
  const [pointsKey, setPointsKey] = useState(0);
  const gen = useRef(0);
  const balanceRef = useRef<Balance | null>(null);

  /** Takes a balance if it is newer than the one shown; true when it was taken. */
  const offerBalance = useCallback((next: Balance): boolean => {
    if (!newerBalance(balanceRef.current, next)) return false;
    balanceRef.current = next;
    setBalance(next);
    return true;
  }, []);

  const load = useCallback(async () => {
    const my = ++gen.current;
    try {
      const c = await request<Customer>(`/api/customers/${encodeURIComponent(id)}`, { token });
      if (my !== gen.current) return;
      setCustomer(c);
      if (typeof c.points === 'number' && !c.points_unavailable) {
        offerBalance({ points: c.points, version: c.points_version ?? null });
      } else {
        // The loyalty service is down: show that rather than a stale number.
        balanceRef.current = null;
        setBalance(null);
      }
      setStatus('ready');
      setLoadError(null);
    } catch (e) {
      if (my !== gen.current) return;
      setStatus((st) => (st === 'ready' ? st : 'error'));
      setLoadError(`The customer could not be loaded: ${panelError(e)}`);
    }
  }, [id, token, offerBalance]);

  useEffect(() => {
    void load();
  }, [load]);

  // Balance, presence and orders change live.
  useEffect(
    () =>
      s.socket.onFrame((f) => {
        if (f.type === 'points' && f.customer === id) {
          if (offerBalance({ points: f.balance, version: f.version ?? null })) setPointsKey((k) => k + 1);
        } else if (f.type === 'presence' && f.customer === id) {
          setCustomer((c) => (c ? { ...c, online: f.online } : c));
        } else if ((f.type === 'order' || (f.type === 'message' && f.message.kind === 'order')) && f.conversation === id) {
          // A customer's conversation id is the customer id: a new card or a card update.
          setOrdersKey((k) => k + 1);
        }
      }),
    [s, id, offerBalance],
  );

  // After a reconnect, frames may have been missed: read the balance again.
  useEffect(() => s.socket.onConnected((e) => void (e.reconnect && load())), [s, load]);

  useEffect(() => {
    if (!flash) return;
    const t = setTimeout(() => setFlash(null), 8000);
    return () => clearTimeout(t);
  }, [flash]);

  const username = customer?.username ?? row?.customer.username ?? id;
  const base = `/api/customers/${encodeURIComponent(id)}`;
  const unavailable = status === 'ready' && balance === null;

  const applyOutcome = (r: PointsOutcome) => {
    if (offerBalance({ points: r.balance, version: r.version ?? null })) setPointsKey((k) => k + 1);
  };

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
          onClick={async () => {
            setRefreshing(true);
            setRefreshKey((k) => k + 1);
            try {
              await load();
            } finally {
              setRefreshing(false);
            }
          }}
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
        <Section title="Vouchers" url={`${base}/vouchers`} token={token} refreshKey={`${refreshKey}`} kind="voucher" />
        <Section title="Active Orders" url={`${base}/orders?state=active`} token={token} refreshKey={`${refreshKey}:${ordersKey}`} kind="order" />
        <Section title="Recent Orders" url={`${base}/orders?state=recent`} token={token} refreshKey={`${refreshKey}:${ordersKey}`} kind="order" />
        <Section title="Transactions" url={`${base}/transactions`} token={token} refreshKey={`${refreshKey}:${pointsKey}`} kind="transaction" paged />
      </div>
      {dialog === 'give' && (
        <PointsDialog
          username={username}
          onClose={() => setDialog(null)}
          onSubmit={async (amount, reason, key) => {
            const r = await request<PointsOutcome>(`${base}/points`, {
              body: reason ? { amount, reason } : { amount },
              token,
              headers: { 'Idempotency-Key': key },
            });
            applyOutcome(r);
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
            const r = await request<PointsOutcome>(`${base}/points/reset`, {
              method: 'POST',
              body: {},
              token,
              headers: { 'Idempotency-Key': key },
            });
            applyOutcome(r);
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

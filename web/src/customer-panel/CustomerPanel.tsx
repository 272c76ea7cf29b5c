import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { ApiError, request } from '../lib/api';
import type { Customer } from '../lib/types';
import { useServices } from '../console/services';
import { chatPath, navigate } from '../console/router';
import { Avatar } from '../common/Avatar';
import { BackIcon } from '../common/icons';
import { Section } from './Section';
import { PointsDialog, ResetDialog } from './dialogs';

/**
 * Customer info: profile, points and the loyalty sections. The loyalty endpoints
 * come with a later backend; until then they answer 404/501 and the panel says
 * "Not available yet". Section data is fetched only when a section is expanded.
 */
export function CustomerPanel({ id }: { id: string }) {
  const s = useServices();
  const token = s.session.token;
  const list = useSyncExternalStore(s.list.subscribe, s.list.getSnapshot);
  const row = list.rows.find((r) => r.id === id);
  const [customer, setCustomer] = useState<Customer | null>(null);
  const [status, setStatus] = useState<'loading' | 'ready' | 'unavailable' | 'error'>('loading');
  const [dialog, setDialog] = useState<'give' | 'reset' | null>(null);
  const [flash, setFlash] = useState<string | null>(null);
  const [refreshKey, setRefreshKey] = useState(0);
  const gen = useRef(0);

  const load = useCallback(async () => {
    const my = ++gen.current;
    setStatus((st) => (st === 'ready' ? st : 'loading'));
    try {
      const c = await request<Customer>(`/api/customers/${encodeURIComponent(id)}`, { token });
      if (my !== gen.current) return;
      setCustomer(c);
      setStatus('ready');
    } catch (e) {
      if (my !== gen.current) return;
      setStatus(e instanceof ApiError && e.notAvailable ? 'unavailable' : 'error');
    }
  }, [id, token]);

  useEffect(() => {
    void load();
  }, [load]);

  // Balance and presence change live.
  useEffect(
    () =>
      s.socket.onFrame((f) => {
        if (f.type === 'points' && f.customer === id) setCustomer((c) => (c ? { ...c, points: f.balance } : c));
        if (f.type === 'presence' && f.customer === id) setCustomer((c) => (c ? { ...c, online: f.online } : c));
      }),
    [s, id],
  );

  useEffect(() => {
    if (!flash) return;
    const t = setTimeout(() => setFlash(null), 5000);
    return () => clearTimeout(t);
  }, [flash]);

  const username = customer?.username ?? row?.customer.username ?? id;
  const base = `/api/customers/${encodeURIComponent(id)}`;

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
        <div className="points" data-testid="points">
          <span className="points-label">Points balance</span>
          <span className="points-value">
            {status === 'ready' && customer ? customer.points.toLocaleString() : status === 'loading' ? '…' : status === 'unavailable' ? 'Not available yet' : '—'}
          </span>
        </div>
        {status === 'error' && <div className="panel-note error">The customer could not be loaded.</div>}
      </div>
      <div className="quick-actions">
        <button type="button" className="btn danger-outline" onClick={() => setDialog('reset')}>
          Reset Balance
        </button>
        <button
          type="button"
          className="btn"
          onClick={() => {
            void load();
            setRefreshKey((k) => k + 1);
          }}
        >
          Refresh
        </button>
        <button type="button" className="btn primary" onClick={() => setDialog('give')}>
          Give Points
        </button>
      </div>
      {flash && (
        <div className="panel-note success" role="status">
          {flash}
        </div>
      )}
      <div className="sections">
        <Section title="Vouchers" url={`${base}/vouchers`} token={token} refreshKey={refreshKey} kind="voucher" />
        <Section title="Active Orders" url={`${base}/orders?state=active`} token={token} refreshKey={refreshKey} kind="order" />
        <Section title="Recent Orders" url={`${base}/orders?state=recent`} token={token} refreshKey={refreshKey} kind="order" />
        <Section title="Transactions" url={`${base}/transactions`} token={token} refreshKey={refreshKey} kind="transaction" paged />
      </div>
      {dialog === 'give' && (
        <PointsDialog
          username={username}
          onClose={() => setDialog(null)}
          onSubmit={async (amount, reason, key) => {
            const r = await request<{ balance: number }>(`${base}/points`, {
              body: { amount, reason: reason || undefined },
              token,
              headers: { 'Idempotency-Key': key },
            });
            setCustomer((c) => (c ? { ...c, points: r.balance } : c));
            setFlash(`Gave ${amount.toLocaleString()} points to ${username}.`);
            setRefreshKey((k) => k + 1);
          }}
        />
      )}
      {dialog === 'reset' && (
        <ResetDialog
          username={username}
          onClose={() => setDialog(null)}
          onConfirm={async (key) => {
            const r = await request<{ balance: number }>(`${base}/points/reset`, {
              method: 'POST',
              body: {},
              token,
              headers: { 'Idempotency-Key': key },
            });
            setCustomer((c) => (c ? { ...c, points: r.balance ?? 0 } : c));
            setFlash(`${username}'s balance was reset to 0.`);
            setRefreshKey((k) => k + 1);
          }}
        />
      )}
    </div>
  );
}

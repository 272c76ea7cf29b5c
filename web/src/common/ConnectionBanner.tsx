import type { ConnState } from '../lib/socket';

/** Says honestly whether the live connection works. */
export function ConnectionBanner({ state, pending }: { state: ConnState; pending: number }) {
  if (state === 'open' || state === 'idle' || state === 'closed') return null;
  const text =
    state === 'offline'
      ? 'You are offline. Messages will be sent when the connection is back.'
      : state === 'connecting'
        ? 'Connecting…'
        : 'Reconnecting…';
  return (
    <div className={`connection-banner ${state}`} role="status" data-state={state} data-testid="connection-banner">
      <span className="spinner" aria-hidden="true" />
      {text}
      {pending > 0 && <span className="banner-pending">{pending} not sent</span>}
    </div>
  );
}

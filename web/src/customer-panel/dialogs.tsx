import { useEffect, useRef, useState } from 'react';
import { ApiError, uuid } from '../lib/api';
import { capitalize } from './store';

function Dialog({ title, onClose, children }: { title: string; onClose: () => void; children: React.ReactNode }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const prev = document.activeElement as HTMLElement | null;
    ref.current?.querySelector<HTMLElement>('input, button')?.focus();
    return () => prev?.focus?.();
  }, []);
  return (
    <div className="dialog-backdrop" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <div
        className="dialog card"
        role="dialog"
        aria-modal="true"
        aria-label={title}
        ref={ref}
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.preventDefault();
            e.stopPropagation();
            onClose();
          }
        }}
      >
        <h2>{title}</h2>
        {children}
      </div>
    </div>
  );
}

/** What a failed points action shows: the server's own words for what was wrong with the request. */
function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 501 || e.status === 405) return 'Not available yet: the points service is not connected.';
    if (e.status === 503) return 'The points service is not answering right now. Try again: points are never given twice.';
    if (e.status === 409) return 'This action was already sent with different details. Close the dialog and start again.';
    if (e.status === 404) return 'This customer is not known to the shop.';
    if (e.status === 0) return 'The server cannot be reached. Try again.';
    return capitalize(e.message);
  }
  return (e as Error).message || 'Something went wrong.';
}

export function PointsDialog({
  username,
  onClose,
  onSubmit,
}: {
  username: string;
  onClose: () => void;
  onSubmit: (amount: number, reason: string, idempotencyKey: string) => Promise<void>;
}) {
  const [amount, setAmount] = useState('');
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // One key per dialog: pressing Confirm again after a lost answer does not award twice.
  const key = useRef(uuid());
  // The server validates the amount (a whole number from 1 to its maximum) and says what is wrong.
  const n = Number(amount);
  const valid = amount.trim() !== '' && Number.isFinite(n);

  return (
    <Dialog title="Give Points" onClose={onClose}>
      <form
        noValidate
        onSubmit={async (e) => {
          e.preventDefault();
          if (!valid) return;
          setBusy(true);
          setError(null);
          try {
            await onSubmit(n, reason.trim(), key.current);
            onClose();
          } catch (err) {
            setError(errorText(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <p className="muted">Award loyalty points to {username}.</p>
        <label>
          Amount
          <input
            type="number"
            min={1}
            step={1}
            inputMode="numeric"
            value={amount}
            onChange={(e) => setAmount(e.target.value)}
            aria-invalid={error ? true : undefined}
            required
          />
        </label>
        <label>
          Reason (optional)
          <input value={reason} maxLength={200} onChange={(e) => setReason(e.target.value)} />
        </label>
        {error && (
          <div className="form-error" role="alert">
            {error}
          </div>
        )}
        <div className="dialog-actions">
          <button type="button" className="btn" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="btn primary" disabled={!valid || busy}>
            {busy ? 'Giving…' : 'Confirm'}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

export function ResetDialog({
  username,
  balance,
  onClose,
  onConfirm,
}: {
  username: string;
  balance: number | null;
  onClose: () => void;
  onConfirm: (idempotencyKey: string) => Promise<void>;
}) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const key = useRef(uuid());
  return (
    <Dialog title="Reset Balance" onClose={onClose}>
      <p>
        Set {username}'s points balance{balance !== null ? ` (${balance.toLocaleString()})` : ''} to <strong>0</strong>? This cannot be undone.
      </p>
      {error && (
        <div className="form-error" role="alert">
          {error}
        </div>
      )}
      <div className="dialog-actions">
        <button type="button" className="btn" onClick={onClose}>
          Cancel
        </button>
        <button
          type="button"
          className="btn danger"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            setError(null);
            try {
              await onConfirm(key.current);
              onClose();
            } catch (err) {
              setError(errorText(err));
            } finally {
              setBusy(false);
            }
          }}
        >
          {busy ? 'Resetting…' : 'Reset to 0'}
        </button>
      </div>
    </Dialog>
  );
}

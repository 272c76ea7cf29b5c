import { useEffect, useRef, useState } from 'react';
import { ApiError, uuid } from '../lib/api';

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

function errorText(e: unknown): string {
  if (e instanceof ApiError && e.notAvailable) return 'Not available yet: the points service is not connected.';
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
  const n = Number(amount);
  const valid = Number.isInteger(n) && n > 0 && n <= 1_000_000;

  return (
    <Dialog title="Give Points" onClose={onClose}>
      <form
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
          <input type="number" min={1} step={1} inputMode="numeric" value={amount} onChange={(e) => setAmount(e.target.value)} required />
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

export function ResetDialog({ username, onClose, onConfirm }: { username: string; onClose: () => void; onConfirm: (idempotencyKey: string) => Promise<void> }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const key = useRef(uuid());
  return (
    <Dialog title="Reset Balance" onClose={onClose}>
      <p>
        Set {username}'s points balance to <strong>0</strong>? This cannot be undone.
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

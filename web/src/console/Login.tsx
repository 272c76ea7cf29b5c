import { useState } from 'react';
import { ApiError, request } from '../lib/api';
import type { Agent } from '../lib/types';
import type { Session } from './services';

export function Login({ onLogin }: { onLogin: (s: Session) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  return (
    <div className="login-page">
      <form
        className="card login-card"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const r = await request<{ token: string; agent: Agent }>('/api/login', { body: { username, password } });
            onLogin({ token: r.token, agent: r.agent });
          } catch (err) {
            setError(
              err instanceof ApiError && (err.status === 401 || err.status === 403)
                ? 'Wrong username or password.'
                : err instanceof ApiError && err.status === 0
                  ? 'The server cannot be reached.'
                  : (err as Error).message,
            );
          } finally {
            setBusy(false);
          }
        }}
      >
        <div className="brand">
          <span className="brand-mark">C</span> CRM Console
        </div>
        <h1>Log in</h1>
        <label>
          Username
          <input name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required autoFocus />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        </label>
        {error && (
          <div className="form-error" role="alert">
            {error}
          </div>
        )}
        <button type="submit" className="btn primary" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
    </div>
  );
}

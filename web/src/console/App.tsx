import { useEffect, useMemo, useState } from 'react';
import { request } from '../lib/api';
import type { Agent } from '../lib/types';
import { Login } from './Login';
import { Shell } from './Shell';
import { loadSession, saveSession, Services, ServicesContext, type Session } from './services';

export function App() {
  const [session, setSession] = useState<Session | null>(() => loadSession());

  const services = useMemo(
    () =>
      session
        ? new Services(session, () => {
            saveSession(null);
            setSession(null);
          })
        : null,
    [session],
  );

  useEffect(() => {
    if (!services) return;
    services.start();
    return () => services.stop();
  }, [services]);

  // Refresh the agent's name from the server (the stored copy may be old).
  useEffect(() => {
    if (!session) return;
    request<{ user?: { id: string; username: string }; display_name?: string | null }>('/api/me', { token: session.token })
      .then((me) => {
        const agent: Agent | null = me.user ? { id: me.user.id, username: me.user.username, display_name: me.display_name ?? undefined } : null;
        if (agent && JSON.stringify(agent) !== JSON.stringify(session.agent)) saveSession({ token: session.token, agent });
      })
      .catch((e) => {
        if (e?.status === 401) {
          saveSession(null);
          setSession(null);
        }
      });
  }, [session]);

  if (!session || !services) {
    return (
      <Login
        onLogin={(s) => {
          saveSession(s);
          setSession(s);
        }}
      />
    );
  }

  return (
    <ServicesContext.Provider value={services}>
      <Shell
        onLogout={() => {
          void request('/api/logout', { method: 'POST', token: session.token }).catch(() => undefined);
          saveSession(null);
          setSession(null);
        }}
      />
    </ServicesContext.Provider>
  );
}

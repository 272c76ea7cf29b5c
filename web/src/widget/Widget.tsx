import { useEffect, useMemo, useState } from 'react';
import { ApiError, request } from '../lib/api';
import { ChatSocket } from '../lib/socket';
import { ConversationStore } from '../conversation/store';
import { ChatPane } from '../conversation/ChatPane';
import { useConversation, useSocket } from '../conversation/useConversation';
import { ConnectionBanner } from '../common/ConnectionBanner';
import { ChatIcon } from '../common/icons';
import { devLogin, loadWidgetSession, saveWidgetSession, type WidgetSession } from './session';

export function Widget() {
  const [session, setSession] = useState<WidgetSession | null>(() => loadWidgetSession());
  if (!session) return <WidgetLogin onLogin={(s) => (saveWidgetSession(s), setSession(s))} />;
  return (
    <WidgetChat
      key={session.token}
      session={session}
      onSignOut={() => {
        saveWidgetSession(null);
        setSession(null);
      }}
    />
  );
}

function WidgetLogin({ onLogin }: { onLogin: (s: WidgetSession) => void }) {
  const [username, setUsername] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <div className="widget">
      <header className="widget-header">
        <ChatIcon />
        <div>
          <div className="widget-title">Chat with us</div>
          <div className="widget-sub">We usually reply in a few minutes</div>
        </div>
      </header>
      <form
        className="widget-login"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            onLogin(await devLogin(username.trim()));
          } catch (err) {
            setError(
              err instanceof ApiError && err.notAvailable
                ? 'This page needs a sign-in from the shop (dev mode is off).'
                : err instanceof ApiError && err.status === 400
                  ? 'Use letters, digits, "_", "-" or "." only.'
                  : (err as Error).message,
            );
          } finally {
            setBusy(false);
          }
        }}
      >
        <label>
          Your username
          <input name="username" value={username} onChange={(e) => setUsername(e.target.value)} required pattern="[A-Za-z0-9_.\-]{1,64}" title="Letters, digits, _ - . (up to 64)" autoFocus />
        </label>
        {error && (
          <div className="form-error" role="alert">
            {error}
          </div>
        )}
        <button type="submit" className="btn primary" disabled={busy || !username.trim()}>
          Start chat
        </button>
      </form>
    </div>
  );
}

function WidgetChat({ session, onSignOut }: { session: WidgetSession; onSignOut: () => void }) {
  const { socket, store } = useMemo(() => {
    const socket = new ChatSocket({
      getTicket: async () => (await request<{ ticket: string }>('/api/ws-ticket', { method: 'POST', token: session.token })).ticket,
      onAuthFailed: onSignOut,
      storageKey: `chat.widget.outbox.${session.customer.id}`,
    });
    const store = new ConversationStore(socket, 'customer', () => session.token);
    return { socket, store };
  }, [session.token]);
  const [conversation, setConversation] = useState(session.conversation);
  const sock = useSocket(socket);

  useEffect(() => {
    socket.start();
    const off = socket.onFrame((f) => {
      if (f.type === 'hello' && f.conversation) setConversation(f.conversation);
    });
    return () => {
      off();
      socket.stop();
    };
  }, [socket]);

  useEffect(() => {
    store.open(conversation);
  }, [store, conversation]);

  const state = useConversation(store, conversation);

  // The customer has seen what is on screen while the page is visible.
  useEffect(() => {
    const check = () => {
      if (document.visibilityState === 'visible' && state?.status === 'ready') store.markSeen(conversation);
    };
    check();
    document.addEventListener('visibilitychange', check);
    window.addEventListener('focus', check);
    return () => {
      document.removeEventListener('visibilitychange', check);
      window.removeEventListener('focus', check);
    };
  }, [store, conversation, state?.messages, state?.status]);

  return (
    <div className="widget">
      <header className="widget-header">
        <ChatIcon />
        <div>
          <div className="widget-title">Chat with us</div>
          <div className="widget-sub">
            Signed in as <strong>{session.customer.username}</strong>
          </div>
        </div>
        <button type="button" className="btn ghost small" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <ConnectionBanner state={sock.state} pending={sock.outbox.length} />
      <ChatPane socket={socket} store={store} id={conversation} typingLabel={(u) => `${u} from support is typing…`} />
    </div>
  );
}

import { useEffect, useRef, useState, useSyncExternalStore } from 'react';
import { useServices } from '../console/services';
import { chatPath, navigate, type ChatRoute } from '../console/router';
import { Avatar } from '../common/Avatar';
import { BackIcon, InfoIcon, MenuIcon } from '../common/icons';
import { useConversation } from './useConversation';
import { ChatPane } from './ChatPane';

/** The agent's view of one conversation: header with presence and menu, then the chat pane. */
export function ConversationView({ id, view }: { id: string; view: ChatRoute['view'] }) {
  const s = useServices();
  const state = useConversation(s.conversations, id);
  const list = useSyncExternalStore(s.list.subscribe, s.list.getSnapshot);
  const root = useRef<HTMLDivElement>(null);
  const [menu, setMenu] = useState(false);

  const row = state?.row ?? list.rows.find((r) => r.id === id);
  const username = row?.customer.username ?? id;
  const online = state?.online ?? null;

  // Seen: the latest message is on screen while the page is visible. This clears the
  // conversation's unread count on the server.
  useEffect(() => {
    const check = () => {
      const el = root.current;
      if (!el || document.visibilityState !== 'visible' || el.offsetParent === null) return;
      if (s.conversations.get(id)?.status !== 'ready') return;
      s.conversations.markSeen(id);
      s.list.markRead(id);
    };
    check();
    document.addEventListener('visibilitychange', check);
    window.addEventListener('focus', check);
    window.addEventListener('resize', check);
    return () => {
      document.removeEventListener('visibilitychange', check);
      window.removeEventListener('focus', check);
      window.removeEventListener('resize', check);
    };
  }, [s, id, state?.messages, state?.status, view]);

  useEffect(() => {
    if (!menu) return;
    const close = (e: Event) => {
      if (e instanceof KeyboardEvent && e.key !== 'Escape') return;
      if (e instanceof MouseEvent && (e.target as HTMLElement).closest('.conv-menu')) return;
      if (e instanceof KeyboardEvent) e.preventDefault();
      setMenu(false);
    };
    window.addEventListener('pointerdown', close);
    window.addEventListener('keydown', close, true);
    return () => {
      window.removeEventListener('pointerdown', close);
      window.removeEventListener('keydown', close, true);
    };
  }, [menu]);

  return (
    <div className="conversation" ref={root} data-conversation={id}>
      <header className="conv-header">
        <button type="button" className="icon-btn back-btn" aria-label="Back to conversations" onClick={() => navigate(chatPath(null))}>
          <BackIcon />
        </button>
        <Avatar name={username} url={row?.customer.avatar_url} size={40} online={online} />
        <div className="conv-title">
          <div className="conv-name">{username}</div>
          <div className={`conv-status${online ? ' online' : ''}`} data-testid="presence">
            {online === null ? '\u00a0' : online ? 'Online' : 'Offline'}
          </div>
        </div>
        <button type="button" className="icon-btn info-btn" aria-label="Customer info" onClick={() => navigate(chatPath(id, true))}>
          <InfoIcon />
        </button>
        <div className="conv-menu">
          <button type="button" className="icon-btn" aria-label="Conversation menu" aria-haspopup="menu" aria-expanded={menu} onClick={() => setMenu((m) => !m)}>
            <MenuIcon />
          </button>
          {menu && (
            <div className="menu" role="menu">
              <button
                type="button"
                role="menuitem"
                onClick={() => {
                  setMenu(false);
                  navigate(chatPath(id, true));
                }}
              >
                Customer info
              </button>
              <button
                type="button"
                role="menuitem"
                onClick={() => {
                  setMenu(false);
                  s.conversations.markSeen(id);
                  s.list.markRead(id);
                }}
              >
                Mark as read
              </button>
              <button
                type="button"
                role="menuitem"
                onClick={() => {
                  setMenu(false);
                  s.conversations.reload(id);
                }}
              >
                Reload history
              </button>
              <button
                type="button"
                role="menuitem"
                onClick={() => {
                  setMenu(false);
                  navigate(chatPath(null));
                }}
              >
                Close conversation
              </button>
            </div>
          )}
        </div>
      </header>
      <ChatPane socket={s.socket} store={s.conversations} id={id} typingLabel={(u) => `${u} is typing…`} />
    </div>
  );
}

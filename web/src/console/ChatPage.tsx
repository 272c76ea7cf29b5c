import { useEffect } from 'react';
import { ChatList } from '../chat-list/ChatList';
import { ConversationView } from '../conversation/ConversationView';
import { CustomerPanel } from '../customer-panel/CustomerPanel';
import { ChatIcon } from '../common/icons';
import { chatPath, navigate, type ChatRoute } from './router';
import { useServices } from './services';

/**
 * Three columns on extra-large screens (list, conversation, customer info); two on
 * desktops and tablets, where the info panel replaces the conversation; one on phones,
 * where you move list -> conversation -> info and back. The route says which column
 * is "current"; CSS decides how many are shown.
 */
export function ChatPage({ route }: { route: ChatRoute }) {
  const s = useServices();
  const { id, view } = route;

  useEffect(() => {
    if (id) s.conversations.open(id);
  }, [s, id]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== 'Escape' || e.defaultPrevented) return;
      const t = e.target as HTMLElement | null;
      if (t?.closest('[role="dialog"], [role="menu"]')) return;
      if (view === 'info' && id) navigate(chatPath(id));
      else if (view === 'conversation') {
        navigate(chatPath(null));
        requestAnimationFrame(() => document.querySelector<HTMLElement>('.chat-rows')?.focus());
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [view, id]);

  return (
    <div className={`chat-page view-${view}`} data-view={view}>
      <section className="col col-list" aria-label="Conversation list">
        <ChatList store={s.list} selected={id} onOpen={(cid) => navigate(chatPath(cid))} />
      </section>
      <section className="col col-conv" aria-label="Conversation">
        {id ? (
          <ConversationView key={id} id={id} view={view} />
        ) : (
          <div className="empty-state">
            <ChatIcon size={48} />
            <p>Select a conversation to start chatting.</p>
          </div>
        )}
      </section>
      <aside className="col col-info" aria-label="Customer info">
        {id ? <CustomerPanel key={id} id={id} /> : <div className="empty-state small">No customer selected.</div>}
      </aside>
    </div>
  );
}

import { useSyncExternalStore } from 'react';
import { ChatIcon, HomeIcon } from '../common/icons';
import { useSocket } from '../conversation/useConversation';
import { ChatPage } from './ChatPage';
import { chatRoute, navigate, usePath } from './router';
import { useServices } from './services';
import { useAlerts } from './alerts';
import { ConnectionBanner } from '../common/ConnectionBanner';
import { badge } from '../common/format';

export function Shell({ onLogout }: { onLogout: () => void }) {
  const services = useServices();
  const path = usePath();
  const route = chatRoute(path);
  const list = useSyncExternalStore(services.list.subscribe, services.list.getSnapshot);
  const sock = useSocket(services.socket);
  useAlerts(services, list.unreadConversations);

  const link = (to: string, label: string, icon: React.ReactNode, active: boolean, count?: number) => (
    <a
      href={to}
      className={`nav-link${active ? ' active' : ''}`}
      aria-current={active ? 'page' : undefined}
      aria-label={count ? `${label} (${count} unread)` : label}
      title={label}
      onClick={(e) => {
        if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
        e.preventDefault();
        navigate(to);
      }}
    >
      {icon}
      <span className="nav-label">{label}</span>
      {count ? <span className="nav-badge">{badge(count)}</span> : null}
    </a>
  );

  return (
    <div className="shell">
      <nav className="sidebar" aria-label="Main">
        <div className="brand">
          <span className="brand-mark">C</span>
          <span className="nav-label">CRM</span>
        </div>
        {link('/', 'Dashboard', <HomeIcon />, !route)}
        {link('/chat', 'Chat', <ChatIcon />, !!route, list.unreadConversations)}
        <div className="sidebar-foot">
          <span className="agent-name nav-label" title={services.session.agent.username}>
            {services.session.agent.display_name || services.session.agent.username}
          </span>
          <button type="button" className="btn ghost small" onClick={onLogout}>
            Log out
          </button>
        </div>
      </nav>
      <main className="content">
        <ConnectionBanner state={sock.state} pending={sock.outbox.length} />
        {route ? <ChatPage route={route} /> : <Dashboard total={list.total} unread={list.unreadConversations} name={services.session.agent.display_name || services.session.agent.username} />}
      </main>
    </div>
  );
}

function Dashboard({ total, unread, name }: { total: number | null; unread: number; name: string }) {
  return (
    <div className="dashboard">
      <h1>Welcome, {name}</h1>
      <div className="stat-cards">
        <div className="card stat">
          <div className="stat-value">{total ?? '…'}</div>
          <div className="stat-label">Customer conversations</div>
        </div>
        <div className="card stat">
          <div className="stat-value">{unread}</div>
          <div className="stat-label">Conversations with unread messages</div>
        </div>
      </div>
      <p className="muted">
        Open <strong>Chat</strong> in the sidebar to answer your customers.
      </p>
    </div>
  );
}

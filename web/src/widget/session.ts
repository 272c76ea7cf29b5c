// The customer's identity in the widget. In production the business's backend signs a
// token and passes it in the URL fragment (#token=...&conversation=...); in dev mode
// the page asks for a username and gets a token from POST /api/dev/customer-token.

import { request } from '../lib/api';

export interface WidgetSession {
  token: string;
  customer: { id: string; username: string };
  conversation: string;
}

const KEY = 'chat.widget.session';

export function loadWidgetSession(): WidgetSession | null {
  const hash = new URLSearchParams(location.hash.slice(1));
  const token = hash.get('token');
  if (token) {
    const id = hash.get('customer') ?? hash.get('conversation') ?? '';
    const s: WidgetSession = {
      token,
      customer: { id, username: hash.get('username') ?? id },
      conversation: hash.get('conversation') ?? id,
    };
    history.replaceState(null, '', location.pathname + location.search);
    saveWidgetSession(s);
    return s;
  }
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as WidgetSession) : null;
  } catch {
    return null;
  }
}

export function saveWidgetSession(s: WidgetSession | null): void {
  if (s) localStorage.setItem(KEY, JSON.stringify(s));
  else localStorage.removeItem(KEY);
}

export async function devLogin(username: string): Promise<WidgetSession> {
  const r = await request<{ token: string; customer: { id: string; username: string }; conversation?: string }>('/api/dev/customer-token', {
    body: { username },
  });
  return { token: r.token, customer: r.customer, conversation: r.conversation ?? r.customer.id };
}

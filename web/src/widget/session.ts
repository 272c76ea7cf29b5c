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

/** What loading a session reads from the page (a parameter so tests can supply it). */
export interface SessionEnv {
  /** `location.hash` without the `#`. */
  hash: string;
  /** The widget runs in a frame: its URL (and `#token=`) was set by the embedding page. */
  framed: boolean;
  confirm: (message: string) => boolean;
  /** Removes the fragment from the address bar (the token must not linger there). */
  clearHash: () => void;
  storage: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;
}

function browserEnv(): SessionEnv {
  return {
    hash: location.hash.slice(1),
    framed: window.parent !== window,
    confirm: (m) => window.confirm(m),
    clearHash: () => history.replaceState(null, '', location.pathname + location.search),
    storage: localStorage,
  };
}

function stored(env: SessionEnv): WidgetSession | null {
  try {
    const raw = env.storage.getItem(KEY);
    return raw ? (JSON.parse(raw) as WidgetSession) : null;
  } catch {
    return null;
  }
}

/**
 * The session: a `#token=` in the URL, else the saved one.
 *
 * A token from the URL is taken as it is only when the widget is framed:
 * then the embedding page set the URL, and the gateway's `frame-ancestors`
 * (`CHAT_FRAME_ANCESTORS`) lets only the business's own pages frame it.
 * Opened as a page, anyone can have sent the link (with their own token,
 * to read what the victim writes), so the customer is asked first, and a
 * refusal keeps the current session.
 */
export function loadWidgetSession(env: SessionEnv = browserEnv()): WidgetSession | null {
  const hash = new URLSearchParams(env.hash);
  const token = hash.get('token');
  const current = stored(env);
  if (!token) return current;
  env.clearHash();
  if (current?.token === token) return current;
  const id = hash.get('customer') ?? hash.get('conversation') ?? '';
  const s: WidgetSession = {
    token,
    customer: { id, username: hash.get('username') ?? id },
    conversation: hash.get('conversation') ?? id,
  };
  if (!env.framed) {
    const replacing = current ? `, instead of "${current.customer.username}"` : '';
    const ok = env.confirm(
      `This link signs you in to the chat as "${s.customer.username}"${replacing}. ` +
        'Continue only if you opened it from the shop\'s own site.',
    );
    if (!ok) return current;
  }
  env.storage.setItem(KEY, JSON.stringify(s));
  return s;
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

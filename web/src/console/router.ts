import { useEffect, useState } from 'react';

// A few routes do not need a router library: history.pushState plus popstate.

export function navigate(path: string, replace = false): void {
  if (location.pathname === path) return;
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  window.dispatchEvent(new Event('app:navigate'));
}

export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = () => setPath(location.pathname);
    window.addEventListener('popstate', on);
    window.addEventListener('app:navigate', on);
    return () => {
      window.removeEventListener('popstate', on);
      window.removeEventListener('app:navigate', on);
    };
  }, []);
  return path;
}

export type ChatRoute = { view: 'list' | 'conversation' | 'info'; id: string | null };

export function chatRoute(path: string): ChatRoute | null {
  const m = /^\/chat(?:\/([^/]+))?(?:\/(info))?\/?$/.exec(path);
  if (!m) return null;
  const id = m[1] ? decodeURIComponent(m[1]) : null;
  return { id, view: !id ? 'list' : m[2] ? 'info' : 'conversation' };
}

export const chatPath = (id?: string | null, info = false) =>
  id ? `/chat/${encodeURIComponent(id)}${info ? '/info' : ''}` : '/chat';

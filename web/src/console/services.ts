import { createContext, useContext } from 'react';
import { request } from '../lib/api';
import { ChatSocket } from '../lib/socket';
import type { Agent } from '../lib/types';
import { ConversationStore } from '../conversation/store';
import { ChatListStore } from '../chat-list/store';

// The logged-in console: one socket and the stores fed by it.

const TOKEN_KEY = 'chat.console.token';
const AGENT_KEY = 'chat.console.agent';

export interface Session {
  token: string;
  agent: Agent;
}

export function loadSession(): Session | null {
  try {
    const token = localStorage.getItem(TOKEN_KEY);
    const agent = localStorage.getItem(AGENT_KEY);
    return token && agent ? { token, agent: JSON.parse(agent) as Agent } : null;
  } catch {
    return null;
  }
}

export function saveSession(s: Session | null): void {
  if (s) {
    localStorage.setItem(TOKEN_KEY, s.token);
    localStorage.setItem(AGENT_KEY, JSON.stringify(s.agent));
  } else {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(AGENT_KEY);
  }
}

export class Services {
  readonly socket: ChatSocket;
  readonly conversations: ConversationStore;
  readonly list: ChatListStore;

  constructor(
    readonly session: Session,
    onAuthFailed: () => void,
  ) {
    const token = () => this.session.token;
    this.socket = new ChatSocket({
      getTicket: async () => (await request<{ ticket: string }>('/api/ws-ticket', { method: 'POST', token: token() })).ticket,
      onAuthFailed,
      storageKey: 'chat.console.outbox',
      // An agent receives a conversation's live events only while it watches it.
      watch: true,
    });
    this.conversations = new ConversationStore(this.socket, 'staff', token);
    this.list = new ChatListStore(this.socket, token);
  }

  start(): void {
    this.socket.start();
    this.list.start();
  }

  /** Closes the connection; the stores stay subscribed so start() can run again (StrictMode does). */
  stop(): void {
    this.socket.stop();
  }
}

export const ServicesContext = createContext<Services | null>(null);

export function useServices(): Services {
  const s = useContext(ServicesContext);
  if (!s) throw new Error('useServices outside the logged-in console');
  return s;
}

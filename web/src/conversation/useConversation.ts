import { useCallback, useSyncExternalStore } from 'react';
import type { ChatSocket } from '../lib/socket';
import type { ConversationStore, ConvState } from './store';

export function useConversation(store: ConversationStore, id: string): ConvState | undefined {
  const subscribe = useCallback((fn: () => void) => store.subscribe(id, fn), [store, id]);
  return useSyncExternalStore(subscribe, () => store.get(id));
}

export function useSocket(socket: ChatSocket) {
  const subscribe = useCallback((fn: () => void) => socket.onChange(fn), [socket]);
  return useSyncExternalStore(subscribe, () => socket.snapshot());
}

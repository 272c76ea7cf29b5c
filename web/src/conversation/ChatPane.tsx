import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { ChatSocket } from '../lib/socket';
import type { Emoji, Message } from '../lib/types';
import type { ConversationStore } from './store';
import { useConversation, useSocket } from './useConversation';
import { MessageList } from './MessageList';
import { Composer, type ComposerHandle } from './Composer';
import { AttachmentToken } from '../attachments/context';
import { excerptOf } from '../attachments/excerpt';

// The gateway relays at most one typing frame per 1.5 s per conversation and socket.
const TYPING_EVERY_MS = 2000;

/** Messages, typing indicator and composer of one conversation; shared by the console and the widget. */
export function ChatPane({
  socket,
  store,
  id,
  typingLabel,
}: {
  socket: ChatSocket;
  store: ConversationStore;
  id: string;
  /** How the other side is named in the typing indicator. */
  typingLabel: (username: string) => string;
}) {
  const state = useConversation(store, id);
  const sock = useSocket(socket);
  const [replyTo, setReplyTo] = useState<Message | null>(null);
  const [editing, setEditing] = useState<Message | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [highlight, setHighlight] = useState<number | null>(null);
  const lastTyping = useRef(0);
  const typingTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(
    () => () => {
      if (typingTimer.current) clearTimeout(typingTimer.current);
    },
    [],
  );
  const composer = useRef<ComposerHandle>(null);

  useEffect(() => {
    setReplyTo(null);
    setEditing(null);
    setNotice(null);
  }, [id]);

  useEffect(() => {
    if (!notice) return;
    const t = setTimeout(() => setNotice(null), 6000);
    return () => clearTimeout(t);
  }, [notice]);

  const fail = (e: unknown) => setNotice((e as Error).message || 'Something went wrong.');

  const onReply = useCallback((m: Message) => {
    setEditing(null);
    setReplyTo(m);
  }, []);
  const onEdit = useCallback((m: Message) => {
    setReplyTo(null);
    setEditing(m);
  }, []);
  const onDelete = useCallback(
    (m: Message) => {
      socket.request({ type: 'delete', conversation: id, seq: m.seq }).catch(fail);
    },
    [socket, id],
  );
  const onReact = useCallback(
    (m: Message, emoji: Emoji, on: boolean) => {
      socket.request({ type: 'react', conversation: id, seq: m.seq, emoji, on }).catch(fail);
    },
    [socket, id],
  );
  const onJump = useCallback(
    async (seq: number) => {
      const found = await store.ensureMessage(id, seq);
      if (!found) {
        setNotice('The original message is no longer available.');
        return;
      }
      // The store has it; React may not have rendered the older page yet.
      const el = await waitForElement(`msg-${id}-${seq}`);
      el?.scrollIntoView({ block: 'center', behavior: 'smooth' });
      setHighlight(seq);
      setTimeout(() => setHighlight((h) => (h === seq ? null : h)), 2000);
    },
    [store, id],
  );

  const outbox = useMemo(() => sock.outbox.filter((it) => it.conversation === id), [sock.outbox, id]);
  if (!state) return null;
  const typing = state.typing && state.typing.until > Date.now() ? state.typing : null;

  return (
    <AttachmentToken.Provider value={store.token}>
    <div className="chat-pane">
      <MessageList
        state={state}
        side={store.side}
        myId={socket.user?.id ?? null}
        outbox={outbox}
        highlight={highlight}
        onReply={onReply}
        onEdit={onEdit}
        onDelete={onDelete}
        onReact={onReact}
        onJump={onJump}
        onRetry={(cid) => socket.retry(cid)}
        onDiscard={(cid) => socket.discard(cid)}
        onLoadOlder={() => void store.loadOlder(id)}
      />
      <div className="typing-slot" aria-live="polite">
        {typing && (
          <div className="typing-indicator" data-testid="typing">
            <span className="dots" aria-hidden="true">
              <i />
              <i />
              <i />
            </span>
            {typingLabel(typing.who.username)}
          </div>
        )}
      </div>
      {notice && (
        <div className="notice error" role="alert">
          {notice}
        </div>
      )}
      <Composer
        ref={composer}
        replyTo={replyTo}
        editing={editing}
        onCancel={() => {
          setReplyTo(null);
          setEditing(null);
        }}
        onSend={(text, files) => {
          socket.send(id, text, replyTo ? { seq: replyTo.seq, excerpt: excerptOf(replyTo) } : undefined, files);
          setReplyTo(null);
          if (typingTimer.current) clearTimeout(typingTimer.current);
          typingTimer.current = null;
        }}
        onSaveEdit={(m, text) => {
          setEditing(null);
          socket.request({ type: 'edit', conversation: id, seq: m.seq, text }).catch(fail);
        }}
        onTyping={() => {
          // Throttled with a trailing edge: typing right after a frame still shows once the window opens.
          const fire = () => {
            typingTimer.current = null;
            if (socket.fire({ type: 'typing', conversation: id })) lastTyping.current = Date.now();
          };
          const wait = TYPING_EVERY_MS - (Date.now() - lastTyping.current);
          if (wait <= 0) fire();
          else if (!typingTimer.current) typingTimer.current = setTimeout(fire, wait);
        }}
      />
    </div>
    </AttachmentToken.Provider>
  );
}

async function waitForElement(id: string, timeoutMs = 2000): Promise<HTMLElement | null> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const el = document.getElementById(id);
    if (el || performance.now() > end) return el;
    await new Promise((r) => requestAnimationFrame(() => r(undefined)));
  }
}

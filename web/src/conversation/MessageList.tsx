import { Fragment, useEffect, useLayoutEffect, useRef } from 'react';
import type { Emoji, Message } from '../lib/types';
import type { OutboxItem } from '../lib/socket';
import type { ConvState, Side } from './store';
import { MessageBubble } from './MessageBubble';
import { ReadStatus, type Delivery } from './ReadStatus';
import { toDate } from '../common/format';

export interface MessageListProps {
  state: ConvState;
  side: Side;
  myId: string | null;
  outbox: readonly OutboxItem[];
  highlight: number | null;
  onReply: (m: Message) => void;
  onEdit: (m: Message) => void;
  onDelete: (m: Message) => void;
  onReact: (m: Message, emoji: Emoji, on: boolean) => void;
  onJump: (seq: number) => void;
  onRetry: (clientId: string) => void;
  onDiscard: (clientId: string) => void;
  onLoadOlder: () => void;
}

function dayLabel(ts: number): string {
  const d = toDate(ts);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86_400_000);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return d.toLocaleDateString(undefined, { weekday: 'long', month: 'long', day: 'numeric' });
}

export function MessageList(p: MessageListProps) {
  const { state, side } = p;
  const scroller = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const lastHeight = useRef(0);
  const firstSeq = useRef<number | null>(null);
  const initial = useRef(true);

  const ownKind = side === 'staff' ? 'staff' : 'customer';
  // Staff messages are "ours" for every agent (any agent may edit them); a customer owns theirs.
  const isOwn = (m: Message) => m.kind === ownKind;

  const delivery = (m: Message): Delivery =>
    m.seq <= state.other.seen ? 'seen' : m.seq <= state.other.delivered ? 'delivered' : 'sent';

  // Keep the view pinned to the bottom for new messages (when the reader is there, or
  // just sent one), and keep the reader's place when older history is prepended.
  const lastKey = useRef('');
  const lastOutbox = useRef(0);
  const lastSeq = state.messages[state.messages.length - 1]?.seq ?? 0;
  const key = `${lastSeq}:${state.messages.length}:${p.outbox.length}:${state.typing ? 1 : 0}`;
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const first = state.messages[0]?.seq ?? null;
    const sent = p.outbox.length > lastOutbox.current;
    if (initial.current && state.status === 'ready') {
      el.scrollTop = el.scrollHeight;
      initial.current = false;
    } else if (firstSeq.current !== null && first !== null && first < firstSeq.current) {
      el.scrollTop += el.scrollHeight - lastHeight.current;
    } else if (key !== lastKey.current && (atBottom.current || sent)) {
      el.scrollTop = el.scrollHeight;
      atBottom.current = true;
    }
    lastKey.current = key;
    lastOutbox.current = p.outbox.length;
    firstSeq.current = first;
    lastHeight.current = el.scrollHeight;
  }, [key, state.messages, state.status, p.outbox.length]);

  // A short history that does not fill the view cannot be scrolled: load more now.
  useEffect(() => {
    const el = scroller.current;
    if (!el || state.status !== 'ready') return;
    if (state.hasMore && !state.loadingOlder && el.scrollHeight <= el.clientHeight + 40) p.onLoadOlder();
  });

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    lastHeight.current = el.scrollHeight;
    if (el.scrollTop < 120 && state.hasMore && !state.loadingOlder) p.onLoadOlder();
  };

  let lastDay = '';
  return (
    <div className="messages" ref={scroller} onScroll={onScroll} aria-live="polite" aria-relevant="additions" data-testid="messages">
      {state.status === 'loading' && state.messages.length === 0 && <div className="messages-note">Loading messages…</div>}
      {state.status === 'error' && <div className="messages-note error">{state.error}</div>}
      {state.status === 'ready' && state.hasMore && (
        <div className="messages-note">{state.loadingOlder ? 'Loading older messages…' : ''}</div>
      )}
      {state.status === 'ready' && !state.hasMore && state.messages.length > 0 && (
        <div className="messages-note start">Beginning of the conversation</div>
      )}
      {state.status === 'ready' && state.messages.length === 0 && p.outbox.length === 0 && (
        <div className="messages-note">No messages yet. Say hello!</div>
      )}
      {state.messages.map((m) => {
        const day = dayLabel(m.ts);
        const sep = day !== lastDay;
        lastDay = day;
        const own = isOwn(m);
        return (
          <Fragment key={m.seq}>
            {sep && (
              <div className="day-sep" role="separator">
                <span>{day}</span>
              </div>
            )}
            <MessageBubble
              conversation={state.id}
              message={m}
              own={own}
              delivery={own && m.kind !== 'order' ? delivery(m) : undefined}
              mine={state.mine}
              highlighted={p.highlight === m.seq}
              showAuthor={side === 'customer' ? m.kind === 'staff' : m.kind === 'staff' && !!m.author && m.author.id !== p.myId}
              onReply={p.onReply}
              onEdit={p.onEdit}
              onDelete={p.onDelete}
              onReact={p.onReact}
              onJump={p.onJump}
            />
          </Fragment>
        );
      })}
      {p.outbox.map((it) => {
        const status: Delivery = it.status === 'failed' ? 'failed' : it.status === 'sending' ? 'sending' : 'queued';
        return (
          <div key={it.client_id} className={`msg msg-own outbox ${it.status}`} data-outbox={it.status} data-client-id={it.client_id}>
            <div className="msg-body">
              <div className="bubble">
                {it.reply_to && (
                  <span className="quote static">
                    <span className="quote-excerpt">{it.reply_to.excerpt}</span>
                  </span>
                )}
                {it.attachments && it.attachments.length > 0 && (
                  <span className="outbox-files">{it.attachments.map((a) => a.name).join(', ')}</span>
                )}
                {it.text && <span className="msg-text">{it.text}</span>}
                <span className="msg-meta">
                  <ReadStatus status={status} />
                </span>
              </div>
              <div className="outbox-note" role="status">
                {it.status === 'failed' ? (
                  <>
                    <span>Not sent{it.error ? `: ${it.error}` : ''}</span>
                    <button type="button" className="link" onClick={() => p.onRetry(it.client_id)}>
                      Retry
                    </button>
                    <button type="button" className="link muted" onClick={() => p.onDiscard(it.client_id)}>
                      Discard
                    </button>
                  </>
                ) : it.status === 'queued' ? (
                  <span>Not sent yet — waiting for connection</span>
                ) : (
                  <span>Sending…</span>
                )}
              </div>
            </div>
          </div>
        );
      })}
    </div>
  );
}

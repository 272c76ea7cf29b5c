import { memo, useState } from 'react';
import type { Emoji, Message } from '../lib/types';
import { EMOJIS } from '../lib/types';
import { fullTime, timeOfDay } from '../common/format';
import { EditIcon, ReplyIcon, SmileIcon, TrashIcon } from '../common/icons';
import { OrderCard } from './OrderCard';
import { MessageAttachments } from '../attachments/MessageAttachments';
import { ReadStatus, type Delivery } from './ReadStatus';

export interface BubbleProps {
  conversation: string;
  message: Message;
  /** This side wrote it: right aligned, primary colour, editable. */
  own: boolean;
  /** Read status to show (own messages only). */
  delivery?: Delivery;
  mine: ReadonlySet<string>;
  highlighted: boolean;
  showAuthor: boolean;
  onReply: (m: Message) => void;
  onEdit: (m: Message) => void;
  onDelete: (m: Message) => void;
  onReact: (m: Message, emoji: Emoji, on: boolean) => void;
  onJump: (seq: number) => void;
}

export const MessageBubble = memo(function MessageBubble(p: BubbleProps) {
  const { message: m, own } = p;
  const [picker, setPicker] = useState(false);
  const [active, setActive] = useState(false);
  const id = `msg-${p.conversation}-${m.seq}`;

  const system = m.kind === 'system';
  const side = system ? 'system' : m.kind === 'order' ? 'order' : own ? 'own' : 'other';
  const reactions = Object.entries(m.reactions ?? {}).filter(([, n]) => n > 0);
  const canAct = !m.deleted;

  return (
    <div
      className={`msg msg-${side}${p.highlighted ? ' highlight' : ''}${active ? ' active' : ''}`}
      id={id}
      data-seq={m.seq}
      data-kind={m.kind}
      onClick={(e) => {
        // Touch screens have no hover: a tap on the bubble shows the actions.
        if ((e.target as HTMLElement).closest('button')) return;
        setActive((a) => !a);
      }}
      onMouseLeave={() => {
        setPicker(false);
        setActive(false);
      }}
    >
      <div className="msg-body">
        {p.showAuthor && m.author && <div className="msg-author">{m.author.username}</div>}
        {system ? (
          <div className="system-line">
            <span className="system-text">{m.deleted ? 'This message was deleted' : m.text}</span>
            <time className="system-time" title={fullTime(m.ts)}>
              {timeOfDay(m.ts)}
            </time>
          </div>
        ) : (
          <div className="bubble">
            {m.reply_to && !m.deleted && (
              <button type="button" className="quote" onClick={() => p.onJump(m.reply_to!.seq)} title="Show the original message">
                <span className="quote-excerpt">{m.reply_to.excerpt || 'Message'}</span>
              </button>
            )}
            {m.kind === 'order' ? (
              <OrderCard order={m.order} text={m.text} />
            ) : m.deleted ? (
              <span className="msg-text deleted">This message was deleted</span>
            ) : (
              <>
                {m.attachments && m.attachments.length > 0 && <MessageAttachments items={m.attachments} />}
                {m.text && <span className="msg-text">{m.text}</span>}
              </>
            )}
            <span className="msg-meta">
              {m.edited_at && !m.deleted && <span className="edited">edited</span>}
              <time title={fullTime(m.ts)}>{timeOfDay(m.ts)}</time>
              {own && p.delivery && <ReadStatus status={p.delivery} />}
            </span>
          </div>
        )}
        {reactions.length > 0 && (
          <div className="reactions">
            {reactions.map(([key, n]) => {
              const e = EMOJIS.find((x) => x.key === key);
              const mine = p.mine.has(`${m.seq}:${key}`);
              return (
                <button
                  type="button"
                  key={key}
                  className={`chip${mine ? ' mine' : ''}`}
                  aria-pressed={mine}
                  aria-label={`${e?.label ?? key} ${n}`}
                  data-emoji={key}
                  onClick={() => p.onReact(m, key as Emoji, !mine)}
                >
                  <span aria-hidden="true">{e?.glyph ?? key}</span> <span className="chip-count">{n}</span>
                </button>
              );
            })}
          </div>
        )}
        {canAct && (
          <div className="msg-actions" role="toolbar" aria-label="Message actions">
            <button type="button" aria-label="Reply" title="Reply" onClick={() => p.onReply(m)}>
              <ReplyIcon />
            </button>
            <button type="button" aria-label="React" title="React" aria-expanded={picker} onClick={() => setPicker((v) => !v)}>
              <SmileIcon />
            </button>
            {own && m.kind !== 'order' && !system && (
              <>
                <button type="button" aria-label="Edit" title="Edit" onClick={() => p.onEdit(m)}>
                  <EditIcon />
                </button>
                <button type="button" aria-label="Delete" title="Delete" className="danger" onClick={() => p.onDelete(m)}>
                  <TrashIcon />
                </button>
              </>
            )}
            {picker && (
              <div className="emoji-picker" role="menu" aria-label="Reactions">
                {EMOJIS.map((e) => {
                  const on = p.mine.has(`${m.seq}:${e.key}`);
                  return (
                    <button
                      type="button"
                      role="menuitemcheckbox"
                      aria-checked={on}
                      key={e.key}
                      aria-label={e.label}
                      title={e.label}
                      onClick={() => {
                        setPicker(false);
                        setActive(false);
                        p.onReact(m, e.key, !on);
                      }}
                    >
                      {e.glyph}
                    </button>
                  );
                })}
              </div>
            )}
          </div>
        )}
      </div>
    </div>
  );
});

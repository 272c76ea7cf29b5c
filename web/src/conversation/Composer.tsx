import { forwardRef, useEffect, useImperativeHandle, useRef, useState } from 'react';
import type { Message } from '../lib/types';
import { SendIcon } from '../common/icons';

export interface ComposerHandle {
  focus: () => void;
}

export interface ComposerProps {
  replyTo: Message | null;
  editing: Message | null;
  onSend: (text: string) => void;
  onSaveEdit: (m: Message, text: string) => void;
  onCancel: () => void;
  onTyping: () => void;
  placeholder?: string;
}

const MAX_CHARS = 4000;
const MAX_HEIGHT = 180;

/** The text area grows with its content; Enter sends, Shift+Enter breaks the line. */
export const Composer = forwardRef<ComposerHandle, ComposerProps>(function Composer(p, ref) {
  const [text, setText] = useState('');
  const area = useRef<HTMLTextAreaElement>(null);
  const draft = useRef('');

  useImperativeHandle(ref, () => ({ focus: () => area.current?.focus() }), []);

  // Entering edit mode puts the message text in the box; leaving it restores the draft.
  useEffect(() => {
    if (p.editing) {
      draft.current = text;
      setText(p.editing.text);
      requestAnimationFrame(() => {
        const el = area.current;
        if (el) {
          el.focus();
          el.setSelectionRange(el.value.length, el.value.length);
        }
      });
    } else {
      setText(draft.current);
      draft.current = '';
    }
  }, [p.editing?.seq]);

  useEffect(() => {
    if (p.replyTo) area.current?.focus();
  }, [p.replyTo]);

  useEffect(() => {
    const el = area.current;
    if (!el) return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, MAX_HEIGHT)}px`;
    el.style.overflowY = el.scrollHeight > MAX_HEIGHT ? 'auto' : 'hidden';
  }, [text]);

  const chars = [...text].length;
  const tooLong = chars > MAX_CHARS;
  const empty = text.trim().length === 0;

  const submit = () => {
    if (empty || tooLong) return;
    if (p.editing) {
      if (text !== p.editing.text) p.onSaveEdit(p.editing, text);
      else p.onCancel();
      return;
    }
    p.onSend(text);
    setText('');
  };

  return (
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
    >
      {(p.replyTo || p.editing) && (
        <div className="composer-context">
          <div className="composer-context-text">
            <strong>{p.editing ? 'Editing message' : `Replying to ${p.replyTo?.author?.username ?? 'message'}`}</strong>
            {p.replyTo && <span className="excerpt">{p.replyTo.text.slice(0, 140)}</span>}
          </div>
          <button type="button" className="icon-btn" aria-label={p.editing ? 'Cancel edit' : 'Cancel reply'} onClick={p.onCancel}>
            ×
          </button>
        </div>
      )}
      <div className="composer-row">
        <textarea
          ref={area}
          rows={1}
          value={text}
          aria-label="Message"
          placeholder={p.placeholder ?? 'Type a message…'}
          onChange={(e) => {
            setText(e.target.value);
            if (e.target.value.trim() && !p.editing) p.onTyping();
          }}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) {
              e.preventDefault();
              submit();
            } else if (e.key === 'Escape' && (p.editing || p.replyTo)) {
              e.preventDefault();
              e.stopPropagation();
              p.onCancel();
            }
          }}
        />
        <button type="submit" className="send-btn" disabled={empty || tooLong} aria-label={p.editing ? 'Save' : 'Send'}>
          <SendIcon />
          <span>{p.editing ? 'Save' : 'Send'}</span>
        </button>
      </div>
      {tooLong && <div className="composer-warning">{chars - MAX_CHARS} characters over the limit of {MAX_CHARS}.</div>}
    </form>
  );
});

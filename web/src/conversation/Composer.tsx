import { forwardRef, useEffect, useImperativeHandle, useRef, useState } from 'react';
import type { Attachment, Message } from '../lib/types';
import { SendIcon } from '../common/icons';
import { useAttachmentToken } from '../attachments/context';
import { PendingUploads } from '../attachments/PendingUploads';
import { MAX_FILES, useUploads } from '../attachments/useUploads';
import { excerptOf } from '../attachments/excerpt';

export interface ComposerHandle {
  focus: () => void;
}

export interface ComposerProps {
  replyTo: Message | null;
  editing: Message | null;
  onSend: (text: string, attachments: Attachment[]) => void;
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
  const picker = useRef<HTMLInputElement>(null);
  const draft = useRef('');
  const uploads = useUploads(useAttachmentToken());
  const [dragging, setDragging] = useState(false);

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
  const files = uploads.items;
  const uploading = files.some((u) => u.status !== 'done');
  const empty = text.trim().length === 0 && (files.length === 0 || !!p.editing);
  const blocked = empty || tooLong || (!p.editing && uploading);

  const submit = () => {
    if (blocked) return;
    if (p.editing) {
      if (text !== p.editing.text) p.onSaveEdit(p.editing, text);
      else p.onCancel();
      return;
    }
    p.onSend(text, files.map((u) => u.attachment!).filter(Boolean));
    setText('');
    uploads.clear();
  };
  const addFiles = (list: FileList | File[] | null | undefined) => {
    if (!list || p.editing) return;
    const arr = Array.from(list).slice(0, MAX_FILES - files.length);
    if (arr.length) uploads.add(arr);
  };

  return (
    <form
      className={`composer${dragging ? ' dragging' : ''}`}
      onSubmit={(e) => {
        e.preventDefault();
        submit();
      }}
      onDragOver={(e) => {
        if (p.editing || !e.dataTransfer.types.includes('Files')) return;
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={(e) => {
        if (p.editing) return;
        e.preventDefault();
        setDragging(false);
        addFiles(e.dataTransfer.files);
      }}
    >
      {(p.replyTo || p.editing) && (
        <div className="composer-context">
          <div className="composer-context-text">
            <strong>{p.editing ? 'Editing message' : `Replying to ${p.replyTo?.author?.username ?? 'message'}`}</strong>
            {p.replyTo && <span className="excerpt">{excerptOf(p.replyTo)}</span>}
          </div>
          <button type="button" className="icon-btn" aria-label={p.editing ? 'Cancel edit' : 'Cancel reply'} onClick={p.onCancel}>
            ×
          </button>
        </div>
      )}
      <PendingUploads items={files} onRemove={uploads.remove} onRetry={uploads.retry} />
      <div className="composer-row">
        {!p.editing && (
          <>
            <button type="button" className="icon-btn attach-btn" aria-label="Attach files" title="Attach photos or files" disabled={files.length >= MAX_FILES} onClick={() => picker.current?.click()}>
              <span aria-hidden="true">📎</span>
            </button>
            <input
              ref={picker}
              type="file"
              multiple
              hidden
              data-testid="attach-input"
              onChange={(e) => {
                addFiles(e.target.files);
                e.target.value = '';
              }}
            />
          </>
        )}
        <textarea
          ref={area}
          rows={1}
          value={text}
          aria-label="Message"
          placeholder={p.placeholder ?? 'Type a message…'}
          onPaste={(e) => {
            const pasted = Array.from(e.clipboardData.files);
            if (pasted.length > 0 && !p.editing) {
              e.preventDefault();
              addFiles(pasted);
            }
          }}
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
        <button type="submit" className="send-btn" disabled={blocked} aria-label={p.editing ? 'Save' : 'Send'}>
          <SendIcon />
          <span>{p.editing ? 'Save' : 'Send'}</span>
        </button>
      </div>
      {tooLong && <div className="composer-warning">{chars - MAX_CHARS} characters over the limit of {MAX_CHARS}.</div>}
    </form>
  );
});

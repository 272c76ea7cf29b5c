import { useEffect, useState } from 'react';
import type { Attachment } from '../lib/types';
import { formatSize, isImage, signedLink } from './api';
import { useAttachmentToken } from './context';

/** A message's files: photos as thumbnails (click: the viewer), other files as cards. */
export function MessageAttachments({ items }: { items: readonly Attachment[] }) {
  const [viewing, setViewing] = useState<Attachment | null>(null);
  const photos = items.filter(isImage);
  const files = items.filter((a) => !isImage(a));
  return (
    <div className="attachments">
      {photos.length > 0 && (
        <div className="attachment-photos">
          {photos.map((a) => (
            <Thumbnail key={a.id} a={a} onOpen={() => setViewing(a)} />
          ))}
        </div>
      )}
      {files.map((a) => (
        <FileCard key={a.id} a={a} />
      ))}
      {viewing && <Viewer a={viewing} onClose={() => setViewing(null)} />}
    </div>
  );
}

function useLink(a: Attachment) {
  const token = useAttachmentToken();
  const [link, setLink] = useState<{ url: string; thumbnail_url: string | null } | null>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let live = true;
    signedLink(a.id, token()).then(
      (l) => live && setLink(l),
      () => live && setFailed(true),
    );
    return () => {
      live = false;
    };
  }, [a.id]);
  return { link, failed };
}

function Thumbnail({ a, onOpen }: { a: Attachment; onOpen: () => void }) {
  const { link, failed } = useLink(a);
  const w = a.width ?? 320;
  const h = a.height ?? 240;
  const scale = Math.min(1, 240 / Math.max(w, h));
  return (
    <button
      type="button"
      className="attachment-thumb"
      onClick={onOpen}
      aria-label={`Open photo ${a.name}`}
      style={{ width: Math.round(w * scale), height: Math.round(h * scale) }}
      data-attachment={a.id}
    >
      {link?.thumbnail_url ? <img src={link.thumbnail_url} alt={a.name} /> : <span className="attachment-placeholder">{failed ? 'Photo unavailable' : 'Photo'}</span>}
    </button>
  );
}

function FileCard({ a }: { a: Attachment }) {
  const { link, failed } = useLink(a);
  return (
    <a
      className={`attachment-file${link ? '' : ' disabled'}`}
      href={link?.url}
      target="_blank"
      rel="noopener noreferrer"
      data-attachment={a.id}
      aria-disabled={!link}
      onClick={(e) => {
        if (!link) e.preventDefault();
      }}
    >
      <span className="attachment-file-icon" aria-hidden="true">
        {a.content_type === 'application/pdf' ? 'PDF' : 'FILE'}
      </span>
      <span className="attachment-file-text">
        <span className="attachment-file-name">{a.name}</span>
        <span className="attachment-file-size">{failed ? 'unavailable' : formatSize(a.size)}</span>
      </span>
    </a>
  );
}

function Viewer({ a, onClose }: { a: Attachment; onClose: () => void }) {
  const { link } = useLink(a);
  useEffect(() => {
    // Escape closes the viewer only (not the conversation behind it).
    const key = (e: KeyboardEvent) => {
      if (e.key !== 'Escape') return;
      e.preventDefault();
      e.stopPropagation();
      onClose();
    };
    window.addEventListener('keydown', key, true);
    return () => window.removeEventListener('keydown', key, true);
  }, [onClose]);
  return (
    <div className="viewer" role="dialog" aria-modal="true" aria-label={a.name} onClick={onClose}>
      <div className="viewer-bar" onClick={(e) => e.stopPropagation()}>
        <span className="viewer-name">{a.name}</span>
        {link && (
          <a className="btn ghost small" href={link.url} target="_blank" rel="noopener noreferrer">
            Open original
          </a>
        )}
        <button type="button" className="icon-btn" aria-label="Close viewer" onClick={onClose}>
          ×
        </button>
      </div>
      {link && <img className="viewer-image" src={link.url} alt={a.name} onClick={(e) => e.stopPropagation()} />}
    </div>
  );
}

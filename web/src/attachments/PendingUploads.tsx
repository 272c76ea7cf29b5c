import { formatSize } from './api';
import type { PendingUpload } from './useUploads';

/** The composer's files while they upload: progress, cancel, retry. */
export function PendingUploads({ items, onRemove, onRetry }: { items: PendingUpload[]; onRemove: (k: string) => void; onRetry: (k: string) => void }) {
  if (items.length === 0) return null;
  return (
    <ul className="pending-uploads" aria-label="Attachments">
      {items.map((u) => (
        <li key={u.key} className={`pending-upload ${u.status}`} data-upload={u.status}>
          {u.preview ? <img src={u.preview} alt="" className="pending-preview" /> : <span className="pending-icon">FILE</span>}
          <span className="pending-text">
            <span className="pending-name">{u.name}</span>
            <span className="pending-size">
              {u.status === 'failed' ? u.error : u.status === 'uploading' ? `${Math.round(u.progress * 100)}% of ${formatSize(u.size)}` : formatSize(u.size)}
            </span>
            {u.status === 'uploading' && (
              <progress max={1} value={u.progress} aria-label={`Uploading ${u.name}`} />
            )}
          </span>
          {u.status === 'failed' && (
            <button type="button" className="link" onClick={() => onRetry(u.key)}>
              Retry
            </button>
          )}
          <button type="button" className="icon-btn" aria-label={u.status === 'uploading' ? `Cancel upload of ${u.name}` : `Remove ${u.name}`} onClick={() => onRemove(u.key)}>
            ×
          </button>
        </li>
      ))}
    </ul>
  );
}

import { useCallback, useEffect, useRef, useState } from 'react';
import type { Attachment } from '../lib/types';
import { uploadFile } from './api';

/** Most files one message may carry (the server's limit). */
export const MAX_FILES = 10;

export interface PendingUpload {
  key: string;
  name: string;
  size: number;
  /** 0..1 */
  progress: number;
  status: 'uploading' | 'done' | 'failed';
  error?: string;
  attachment?: Attachment;
  /** A local preview of an image (object URL of the user's own file). */
  preview?: string;
}

/** The composer's files: each uploads at once, with progress; cancel, retry, remove. */
export function useUploads(token: () => string | null) {
  const [items, setItems] = useState<PendingUpload[]>([]);
  const files = useRef(new Map<string, File>());
  const cancels = useRef(new Map<string, () => void>());
  const seq = useRef(0);

  const patch = (key: string, p: Partial<PendingUpload>) => setItems((xs) => xs.map((x) => (x.key === key ? { ...x, ...p } : x)));

  const start = useCallback(
    (key: string) => {
      const file = files.current.get(key);
      if (!file) return;
      patch(key, { status: 'uploading', progress: 0, error: undefined });
      const up = uploadFile(file, file.name || 'pasted-image.png', token(), (f) => patch(key, { progress: f }));
      cancels.current.set(key, up.cancel);
      up.promise.then(
        (a) => patch(key, { status: 'done', progress: 1, attachment: a }),
        (e: { code?: string; message?: string }) => {
          if (e.code === 'cancelled') return;
          patch(key, { status: 'failed', error: e.message ?? 'Upload failed.' });
        },
      );
    },
    [token],
  );

  const add = useCallback(
    (list: Iterable<File>) => {
      const fresh: PendingUpload[] = [];
      for (const f of list) {
        const key = `u${++seq.current}`;
        files.current.set(key, f);
        fresh.push({
          key,
          name: f.name || 'pasted-image.png',
          size: f.size,
          progress: 0,
          status: 'uploading',
          preview: f.type.startsWith('image/') ? URL.createObjectURL(f) : undefined,
        });
      }
      setItems((xs) => [...xs, ...fresh].slice(0, MAX_FILES));
      for (const p of fresh) start(p.key);
    },
    [start],
  );

  const remove = useCallback((key: string) => {
    cancels.current.get(key)?.();
    cancels.current.delete(key);
    files.current.delete(key);
    setItems((xs) => {
      const gone = xs.find((x) => x.key === key);
      if (gone?.preview) URL.revokeObjectURL(gone.preview);
      return xs.filter((x) => x.key !== key);
    });
  }, []);

  /** The message went out: the composer starts empty (previews are released). */
  const clear = useCallback(() => {
    setItems((xs) => {
      for (const x of xs) if (x.preview) URL.revokeObjectURL(x.preview);
      return [];
    });
    files.current.clear();
    cancels.current.clear();
  }, []);

  useEffect(() => () => cancels.current.forEach((c) => c()), []);

  return { items, add, remove, retry: start, clear };
}

// Uploads (`POST /api/attachments`, with progress and cancel) and signed
// download links (`GET /api/attachments/{id}/link`): `<img>` and new tabs
// cannot send the bearer token, so they open short-lived signed URLs.

import { ApiError, request } from '../lib/api';
import type { Attachment } from '../lib/types';

export interface Upload {
  promise: Promise<Attachment>;
  cancel: () => void;
}

/** Uploads one file; `onProgress` gets 0..1. XHR: fetch reports no upload progress. */
export function uploadFile(file: Blob, name: string, token: string | null, onProgress: (f: number) => void): Upload {
  const xhr = new XMLHttpRequest();
  const promise = new Promise<Attachment>((resolve, reject) => {
    xhr.open('POST', '/api/attachments');
    if (token) xhr.setRequestHeader('Authorization', `Bearer ${token}`);
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      const body = xhr.response as (Attachment & { error?: { code?: string; message?: string } }) | null;
      if (xhr.status === 201 && body) resolve(body);
      else reject(new ApiError(xhr.status, body?.error?.code ?? `http_${xhr.status}`, body?.error?.message ?? `Upload failed (${xhr.status}).`));
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload was interrupted.'));
    xhr.onabort = () => reject(new ApiError(0, 'cancelled', 'Cancelled.'));
    const form = new FormData();
    form.append('file', file, name);
    xhr.send(form);
  });
  return { promise, cancel: () => xhr.abort() };
}

interface Link {
  url: string;
  thumbnail_url: string | null;
  expires_at: number;
}

const links = new Map<string, Promise<Link>>();

/** Signed URLs of an attachment, cached until a minute before they expire. */
export function signedLink(id: string, token: string | null): Promise<Link> {
  const cached = links.get(id);
  if (cached) return cached;
  const p = request<Link>(`/api/attachments/${encodeURIComponent(id)}/link`, { token }).then((l) => {
    setTimeout(() => links.delete(id), Math.max(0, l.expires_at - Date.now() - 60_000));
    return l;
  });
  p.catch(() => links.delete(id));
  links.set(id, p);
  return p;
}

export function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function isImage(a: { content_type: string }): boolean {
  return /^image\/(jpeg|png|webp|gif)$/.test(a.content_type);
}

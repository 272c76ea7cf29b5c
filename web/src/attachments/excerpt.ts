import type { Message } from '../lib/types';
import { isImage } from './api';

/** How a quote names a message: its text, else "Photo" or "File: name" (as the server does). */
export function excerptOf(m: Pick<Message, 'text' | 'attachments'>): string {
  if (m.text.trim()) return m.text.slice(0, 140);
  const a = m.attachments?.[0];
  if (!a) return '';
  return isImage(a) ? 'Photo' : `File: ${a.name}`.slice(0, 140);
}

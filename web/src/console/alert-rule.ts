import type { ConversationRow } from '../lib/types';

// Which live chat-list rows are news for the background alerts. An agent socket gets
// a conversation's messages only while it watches it, but every conversation's
// `conversation` row: a row whose unread count went up means new customer messages.

/** A conversation seen for the first time counts only if its latest message is this recent. */
export const FRESH_MS = 60_000;

export interface RowAlert {
  title: string;
  body: string;
  /** One notification per conversation: a newer one replaces it. */
  tag: string;
  conversation: string;
}

/**
 * The alert for a live row, or null. `prevUnread`: the unread count last seen for the
 * conversation (from a row or a list page), undefined when it was never seen.
 */
export function rowAlert(row: ConversationRow, prevUnread: number | undefined, now = Date.now()): RowAlert | null {
  if (!(row.unread > 0)) return null;
  if (prevUnread !== undefined) {
    // The same row again, a receipt, an edit or a reaction: the count did not go up.
    if (row.unread <= prevUnread) return null;
  } else if (!(now - row.last_ts < FRESH_MS)) {
    // Never seen: a new conversation is news; a change to an old one (an edit) is not.
    return null;
  }
  return {
    title: `New message from ${row.customer?.username || 'a customer'}`,
    body: (row.preview ?? '').slice(0, 140),
    tag: `chat-${row.id}`,
    conversation: row.id,
  };
}

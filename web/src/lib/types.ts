// Wire types: mirror schema/src/frames.rs and shared PROTOCOL.md.
// Clients ignore fields they do not know, so these list only what we read.

export type Emoji = 'thumbs_up' | 'heart' | 'laughing' | 'surprised' | 'sad' | 'fire';

export const EMOJIS: { key: Emoji; glyph: string; label: string }[] = [
  { key: 'thumbs_up', glyph: '👍', label: 'thumbs up' },
  { key: 'heart', glyph: '❤️', label: 'heart' },
  { key: 'laughing', glyph: '😆', label: 'laughing' },
  { key: 'surprised', glyph: '😮', label: 'surprised' },
  { key: 'sad', glyph: '😢', label: 'sad' },
  { key: 'fire', glyph: '🔥', label: 'fire' },
];

export type UserKind = 'agent' | 'customer';

export interface UserRef {
  kind: UserKind;
  id: string;
  username: string;
}

export type MessageKind = 'customer' | 'staff' | 'system' | 'order';

export interface OrderItem {
  name?: string;
  qty?: number;
  quantity?: number;
  /** Unit price. */
  price?: number | string;
}

export type OrderStatus = 'placed' | 'accepted' | 'preparing' | 'ready' | 'completed' | 'cancelled';

export interface OrderStep {
  status: string;
  state: 'done' | 'current' | 'todo';
}

/** The `order` of an order card message (and of the `order` frame). */
export interface OrderInfo {
  id?: string;
  /** Older shape, read defensively. */
  order_id?: string;
  status?: string;
  steps?: OrderStep[];
  items?: OrderItem[];
  total?: number | string;
  currency?: string;
  updated_at?: number;
  ts?: number;
}

/** An order as the panel sections list it (`GET /api/customers/{id}/orders`). */
export interface Order extends OrderInfo {
  customer_id?: string;
  history?: { status: string; ts: number }[];
  placed_at?: number;
}

export interface Voucher {
  id: string;
  title?: string;
  code?: string;
  expires_at?: number | null;
  state?: string;
}

export interface LedgerEntry {
  id: string;
  seq?: number;
  kind: 'earned' | 'spent' | 'awarded' | 'reset' | string;
  amount: number;
  balance_after?: number;
  reason?: string | null;
  by?: { id: string; username: string; display_name?: string | null } | null;
  ts?: number;
}

/** Answer of Give Points and Reset Balance. */
export interface PointsOutcome {
  balance: number;
  version?: number;
  transaction: LedgerEntry | null;
  noop?: boolean;
  message?: string;
}

export interface Message {
  seq: number;
  kind: MessageKind;
  author?: UserRef;
  text: string;
  reply_to?: { seq: number; excerpt: string };
  ts: number;
  edited_at?: number;
  deleted: boolean;
  reactions: Record<string, number>;
  order?: OrderInfo;
  client_id?: string;
}

export interface CustomerRef {
  id: string;
  username: string;
  avatar_url?: string | null;
}

export interface ConversationRow {
  id: string;
  customer: CustomerRef;
  preview: string;
  last_ts: number;
  unread: number;
  last_seq?: number;
}

export interface Receipts {
  customer_delivered: number;
  customer_seen: number;
  staff_delivered: number;
  staff_seen: number;
}

export interface ConversationDetail {
  row: ConversationRow | null;
  receipts: Receipts;
  online: boolean;
}

export interface Customer {
  id: string;
  username: string;
  avatar_url?: string | null;
  /** null when the loyalty service cannot answer (then `points_unavailable` is true). */
  points: number | null;
  /** Ledger length: only a higher version replaces a balance. */
  points_version?: number | null;
  points_unavailable?: boolean;
  online: boolean;
  last_seen?: number | null;
}

export interface Agent {
  id: string;
  username: string;
  display_name?: string;
}

export type ErrorCode =
  | 'invalid'
  | 'forbidden'
  | 'not_found'
  | 'too_large'
  | 'rate_limited'
  | 'unavailable'
  | 'unauthorized'
  | 'conflict';

export type ServerFrame =
  | { type: 'hello'; user: UserRef; epoch: string; conversation?: string; node?: string }
  | { type: 'ack'; rid?: string; conversation: string; seq: number; ts: number; pos?: number; duplicate?: boolean }
  | { type: 'error'; rid?: string; code: ErrorCode; message: string }
  | { type: 'message'; conversation: string; pos: number; message: Message }
  | { type: 'edited'; conversation: string; pos: number; seq: number; text: string; edited_at: number }
  | { type: 'deleted'; conversation: string; pos: number; seq: number }
  | {
      type: 'reactions';
      conversation: string;
      pos: number;
      seq: number;
      reactions: Record<string, number>;
      by: UserRef;
      emoji: Emoji;
      on: boolean;
    }
  | { type: 'typing'; conversation: string; who: UserRef; expires_in_ms: number }
  | { type: 'receipt'; conversation: string; delivered_seq: number; seen_seq: number }
  | { type: 'presence'; customer: string; online: boolean; last_seen?: number }
  | ({ type: 'conversation' } & ConversationRow)
  | { type: 'points'; customer: string; balance: number; version?: number }
  | { type: 'order'; conversation: string; pos: number; seq: number; order: OrderInfo }
  | { type: 'replay'; conversation: string; from_seq: number; complete: boolean; to_seq?: number }
  | { type: 'pong' };

/** Server frames that change a conversation's history and carry its position. */
export type EventFrame = Extract<ServerFrame, { pos: number }>;

export function isEventFrame(f: ServerFrame): f is EventFrame {
  return (
    (f.type === 'message' || f.type === 'edited' || f.type === 'deleted' || f.type === 'reactions' || f.type === 'order') &&
    typeof (f as EventFrame).pos === 'number'
  );
}

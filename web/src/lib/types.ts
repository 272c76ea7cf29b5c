// Wire types. The frames, rows and enums of schema/src/frames.rs are generated
// into ./generated (ts-rs; `UPDATE_TS_BINDINGS=1 cargo test -p schema ts_bindings`
// regenerates them, and `cargo test` fails when they drift): this file re-exports
// them, narrows the parts the schema leaves open (an order card's `order` is any
// JSON there), and adds the REST shapes and UI constants the console needs.

import type * as Wire from './generated';

export type {
  Attachment,
  ClientFrame,
  ConversationRow,
  CustomerRef,
  Emoji,
  ErrorCode,
  MessageKind,
  ReplyRef,
  UserKind,
  UserRef,
} from './generated';

import type { ClientFrame, ConversationRow, Emoji } from './generated';

/** A client frame as sent: any frame may carry a `rid`, which its `ack` or `error` repeats. */
export type OutgoingFrame = ClientFrame & { rid?: string };

export const EMOJIS: { key: Emoji; glyph: string; label: string }[] = [
  { key: 'thumbs_up', glyph: '👍', label: 'thumbs up' },
  { key: 'heart', glyph: '❤️', label: 'heart' },
  { key: 'laughing', glyph: '😆', label: 'laughing' },
  { key: 'surprised', glyph: '😮', label: 'surprised' },
  { key: 'sad', glyph: '😢', label: 'sad' },
  { key: 'fire', glyph: '🔥', label: 'fire' },
];

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

/** A message as the console reads it: an order card's `order` read as {@link OrderInfo}. */
export type Message = Omit<Wire.Message, 'order'> & { order?: OrderInfo };

type Narrow<F> = F extends { type: 'message'; message: Wire.Message }
  ? Omit<F, 'message'> & { message: Message }
  : F extends { type: 'order'; order: unknown }
    ? Omit<F, 'order'> & { order: OrderInfo }
    : F;

/** The generated server frames, with {@link Message} and {@link OrderInfo} for the open JSON. */
export type ServerFrame = Narrow<Wire.ServerFrame>;

/** Server frames that change a conversation's history and carry its position. */
export type EventFrame = Extract<ServerFrame, { pos: number }>;

export function isEventFrame(f: ServerFrame): f is EventFrame {
  return (
    (f.type === 'message' || f.type === 'edited' || f.type === 'deleted' || f.type === 'reactions' || f.type === 'order') &&
    typeof (f as EventFrame).pos === 'number'
  );
}

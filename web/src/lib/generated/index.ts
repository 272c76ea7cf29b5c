// Generated from schema/src/frames.rs (ts-rs). Do not edit: regenerate with
//   UPDATE_TS_BINDINGS=1 cargo test -p schema ts_bindings

export type { Attachment } from './Attachment';
export type { ClientFrame } from './ClientFrame';
export type { ConversationRow } from './ConversationRow';
export type { CustomerRef } from './CustomerRef';
export type { Emoji } from './Emoji';
export type { ErrorCode } from './ErrorCode';
export type { Message } from './Message';
export type { MessageKind } from './MessageKind';
export type { ReplyRef } from './ReplyRef';
export type { ServerFrame } from './ServerFrame';
export type { UserKind } from './UserKind';
export type { UserRef } from './UserRef';

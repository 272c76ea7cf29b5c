//! Limits shared by gateway, worker and clients.

/// Longest message text, in Unicode scalar values (what JS calls code points).
pub const MAX_TEXT_CHARS: usize = 4000;
/// Largest WebSocket message the gateway reads; larger closes the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest conversation / customer / client id.
pub const MAX_ID_LEN: usize = 64;
/// Length of a reply quote and of a chat-list preview.
pub const EXCERPT_CHARS: usize = 140;
/// Largest page of the chat list or of history.
pub const MAX_PAGE: usize = 100;
/// Default page size.
pub const DEFAULT_PAGE: usize = 50;
/// How long a typing indicator lasts unless renewed.
pub const TYPING_TTL_MS: u64 = 5000;
/// Entries kept in a conversation's replay stream (approximate, `MAXLEN ~`).
pub const REPLAY_LEN: usize = 1000;
/// Entries kept in the staff stream (`XADD MAXLEN ~`): the backlog a gateway
/// may fall behind by before it misses staff frames (positioned ones are then
/// filled from the replay streams).
pub const STAFF_EVENTS_LEN: usize = 50_000;
/// Events one `resume` replays per conversation before answering `complete: false`.
pub const MAX_REPLAY: usize = 1000;
/// Largest order of magnitude for a body of a REST request.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most attachments one message may carry.
pub const MAX_ATTACHMENTS: usize = 10;

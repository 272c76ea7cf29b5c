//! Everything that crosses a process boundary, defined once.
//!
//! - [`limits`]: sizes and rates every process agrees on.
//! - [`ids`]: validation of the string ids clients send.
//! - [`frames`]: the client wire protocol (JSON text frames), both directions.
//! - [`envelope`]: what gateways and workers put in Redis streams (bincode 2
//!   behind a version byte).
//! - [`loyalty`]: the customer panel's data (points ledger, vouchers, orders,
//!   order cards) shared by the store, the worker and the gateway.
//! - [`chatlist`]: the chat-list row hash in Redis (field names, encode,
//!   decode), written by the worker and read by the gateway.
//! - [`keys`]: the Redis key layout. Every key of one conversation carries the
//!   hash tag `{c:<id>}` so multi-key scripts stay in one Cluster slot.

pub mod chatlist;
pub mod envelope;
pub mod frames;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod loyalty;

/// Milliseconds since the Unix epoch, UTC.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The first `max` characters of `text` (on a char boundary), for previews and
/// reply quotes.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

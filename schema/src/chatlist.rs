//! The chat-list row: the Redis hash at `keys.row(conv)` that the worker's
//! row script writes and the gateway's `GET /api/conversations` reads, defined
//! once. Loaders that write rows directly (the load test's seeding) use
//! [`encode`] too, so every writer and reader agrees on the field names and
//! their text form.
//!
//! Every value is text (Redis hashes hold strings): integers in decimal,
//! `avatar_url` empty when there is none. [`decode`] is lenient, because a
//! row that is partly missing or garbled (an operator's `HSET`, a field
//! written by an older release) is better shown with defaults than dropped
//! from the list: a missing or unparsable number reads as 0, a missing
//! customer id or username as the conversation id.

use std::collections::HashMap;

use crate::frames::{ConversationRow, CustomerRef};

pub const CUSTOMER_ID: &str = "customer_id";
pub const USERNAME: &str = "username";
/// Empty when the customer has no avatar.
pub const AVATAR_URL: &str = "avatar_url";
pub const PREVIEW: &str = "preview";
/// Time of the last message (ms since the epoch); 0 while the conversation
/// has only receipts (such a row is kept out of the sorted sets).
pub const LAST_TS: &str = "last_ts";
/// Position of the conversation's last event (SQL `last_pos`).
pub const LAST_SEQ: &str = "last_seq";
pub const UNREAD: &str = "unread";
/// The staff's read position: the row script's tie-breaker between two
/// states at the same `last_seq`. Not part of [`ConversationRow`].
pub const STAFF_SEEN: &str = "staff_seen";

/// Every field, in the order [`encode`] returns them (and the worker's row
/// script takes its `ARGV`).
pub const FIELDS: [&str; 8] = [CUSTOMER_ID, USERNAME, AVATAR_URL, PREVIEW, LAST_TS, LAST_SEQ, UNREAD, STAFF_SEEN];

/// Everything the row hash holds: the row agents see and the script's tie-breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    pub row: ConversationRow,
    pub staff_seen: u64,
}

/// The row as field/value pairs, in [`FIELDS`] order (for `HSET key f v ...`
/// or the row script's `ARGV`).
pub fn encode(row: &ConversationRow, staff_seen: u64) -> [(&'static str, String); 8] {
    [
        (CUSTOMER_ID, row.customer.id.clone()),
        (USERNAME, row.customer.username.clone()),
        (AVATAR_URL, row.customer.avatar_url.clone().unwrap_or_default()),
        (PREVIEW, row.preview.clone()),
        (LAST_TS, row.last_ts.to_string()),
        (LAST_SEQ, row.last_seq.to_string()),
        (UNREAD, row.unread.to_string()),
        (STAFF_SEEN, staff_seen.to_string()),
    ]
}

/// The row of conversation `id` from its hash (`HGETALL`); `None` when the
/// hash is empty (no such row). What the gateway's `row_from` does.
pub fn decode(id: &str, h: &HashMap<String, String>) -> Option<ConversationRow> {
    decode_stored(id, h).map(|s| s.row)
}

/// [`decode`], with the `staff_seen` tie-breaker.
pub fn decode_stored(id: &str, h: &HashMap<String, String>) -> Option<StoredRow> {
    if h.is_empty() {
        return None;
    }
    let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let row = ConversationRow {
        id: id.to_string(),
        customer: CustomerRef {
            id: h.get(CUSTOMER_ID).cloned().unwrap_or_else(|| id.to_string()),
            username: h.get(USERNAME).cloned().unwrap_or_else(|| id.to_string()),
            avatar_url: h.get(AVATAR_URL).filter(|a| !a.is_empty()).cloned(),
        },
        preview: h.get(PREVIEW).cloned().unwrap_or_default(),
        last_ts: num(LAST_TS),
        unread: num(UNREAD).max(0) as u64,
        last_seq: num(LAST_SEQ).max(0) as u64,
    };
    Some(StoredRow { row, staff_seen: num(STAFF_SEEN).max(0) as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(avatar: Option<&str>) -> ConversationRow {
        ConversationRow {
            id: "c1".into(),
            customer: CustomerRef { id: "c1".into(), username: "Ann Lee".into(), avatar_url: avatar.map(Into::into) },
            preview: "héllo, 1|2".into(),
            last_ts: 1_700_000_000_123,
            unread: 3,
            last_seq: 42,
        }
    }

    fn hash(pairs: &[(&str, String)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn round_trip() {
        for avatar in [None, Some("https://a/x.png")] {
            let r = row(avatar);
            let pairs = encode(&r, 7);
            assert_eq!(pairs.clone().map(|(k, _)| k), FIELDS);
            let got = decode_stored("c1", &hash(&pairs)).expect("row");
            assert_eq!(got, StoredRow { row: r.clone(), staff_seen: 7 });
            assert_eq!(decode("c1", &hash(&pairs)), Some(r));
        }
        // No avatar is written as an empty string, not left out.
        assert_eq!(encode(&row(None), 0)[2], (AVATAR_URL, String::new()));
    }

    #[test]
    fn missing_and_garbled_fields_read_as_defaults() {
        assert_eq!(decode("c1", &HashMap::new()), None, "no hash, no row");
        // Receipts only so far: the worker wrote just some fields.
        let h = hash(&[(UNREAD, "0".into()), (STAFF_SEEN, "2".into())]);
        let got = decode_stored("c9", &h).expect("row");
        assert_eq!(got.row.customer, CustomerRef { id: "c9".into(), username: "c9".into(), avatar_url: None });
        assert_eq!((got.row.preview.as_str(), got.row.last_ts, got.row.last_seq, got.staff_seen), ("", 0, 0, 2));
        // Not numbers, negative numbers, an empty avatar.
        let h = hash(&[
            (LAST_TS, "soon".into()),
            (UNREAD, "-4".into()),
            (LAST_SEQ, "1e3".into()),
            (STAFF_SEEN, "".into()),
            (AVATAR_URL, "".into()),
            ("unknown", "x".into()),
        ]);
        let got = decode_stored("c2", &h).expect("row");
        assert_eq!((got.row.last_ts, got.row.unread, got.row.last_seq, got.staff_seen), (0, 0, 0, 0));
        assert_eq!(got.row.customer.avatar_url, None);
    }
}

//! What travels through Redis streams between processes: one version byte,
//! then bincode 2 (standard config). A reader rejects an unknown version or a
//! body that does not decode, rather than guessing.
//!
//! Versions: a writer writes [`ENVELOPE_VERSION`]; a reader reads it and the
//! version before it, so in a rolling upgrade the new readers lose nothing
//! the old writers still write (deploy readers, the worker, before writers).
//! A version the reader does not know yet (newer) is an error the reader
//! must not ack away: the worker dead-letters it (reason `version`). Each type
//! names the shape the previous version wrote ([`Versioned::Previous`],
//! itself when it did not change). To change a type's shape: bump
//! [`ENVELOPE_VERSION`], keep the old shape as a type of its own with
//! `From<Old> for New`, and name it as `Previous`.
//!
//! - [`LogEvent`]: gateway -> worker, on the log shards. What the worker persists.
//! - [`Relay`]: anyone -> a gateway node's inbox. A frame already rendered as
//!   JSON once, delivered as-is to the local sockets of its audience.
//! - [`LoyaltyRequest`]: gateway -> worker, on the loyalty stream: a points
//!   action to execute; [`LoyaltyReply`]: worker -> the waiting gateway.

use serde::{Deserialize, Serialize};

use crate::frames::{Attachment, CustomerRef, Emoji, ErrorCode, MessageKind, ReplyRef, Side, UserRef};
use crate::loyalty::{Actor, PointsAction, PointsOutcome};

/// Current envelope version. Bump it when a type below changes shape.
/// 2: `LogEvent::Message` carries `attachments` (version 1: [`LogEventV1`]).
pub const ENVELOPE_VERSION: u8 = 2;
/// The first version ever written: nothing older exists to be read.
pub const FIRST_ENVELOPE_VERSION: u8 = 1;
/// Largest envelope a reader accepts.
pub const MAX_ENVELOPE_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("empty envelope")]
    Empty,
    /// A version this reader does not read: newer than it knows, or older
    /// than the one before the current.
    #[error("unknown envelope version {0}")]
    Version(u8),
    #[error("envelope larger than {MAX_ENVELOPE_BYTES} bytes")]
    TooLarge,
    #[error("envelope does not decode: {0}")]
    Decode(String),
}

/// An event the worker persists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogEvent {
    Message {
        conversation: String,
        customer: CustomerRef,
        seq: u64,
        ts: i64,
        kind: MessageKind,
        author: Option<UserRef>,
        text: String,
        reply_to: Option<ReplyRef>,
        client_id: Option<String>,
        /// Order card payload (JSON text) for `kind == Order`.
        order_json: Option<String>,
        /// Files sent with the message (the gateway checked the uploader).
        attachments: Vec<Attachment>,
    },
    Edit { conversation: String, pos: u64, seq: u64, text: String, edited_at: i64, by: UserRef },
    Delete { conversation: String, pos: u64, seq: u64, ts: i64, by: UserRef },
    React { conversation: String, pos: u64, seq: u64, emoji: Emoji, on: bool, by: UserRef, ts: i64 },
    /// `side` has received (`delivered`) or read (`seen`) up to these positions.
    Read { conversation: String, side: Side, delivered: u64, seen: u64, ts: i64 },
    /// The order card at message `seq` now shows `order_json` (an
    /// [`crate::loyalty::OrderCard`] as JSON); `pos` is this update's
    /// position, and the highest `pos` wins.
    OrderCard { conversation: String, pos: u64, seq: u64, order_json: String, ts: i64 },
}

impl LogEvent {
    pub fn conversation(&self) -> &str {
        match self {
            LogEvent::Message { conversation, .. }
            | LogEvent::Edit { conversation, .. }
            | LogEvent::Delete { conversation, .. }
            | LogEvent::React { conversation, .. }
            | LogEvent::Read { conversation, .. }
            | LogEvent::OrderCard { conversation, .. } => conversation,
        }
    }
}

/// [`LogEvent`] as envelope version 1 wrote it: messages had no attachments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LogEventV1 {
    Message {
        conversation: String,
        customer: CustomerRef,
        seq: u64,
        ts: i64,
        kind: MessageKind,
        author: Option<UserRef>,
        text: String,
        reply_to: Option<ReplyRef>,
        client_id: Option<String>,
        order_json: Option<String>,
    },
    Edit { conversation: String, pos: u64, seq: u64, text: String, edited_at: i64, by: UserRef },
    Delete { conversation: String, pos: u64, seq: u64, ts: i64, by: UserRef },
    React { conversation: String, pos: u64, seq: u64, emoji: Emoji, on: bool, by: UserRef, ts: i64 },
    Read { conversation: String, side: Side, delivered: u64, seen: u64, ts: i64 },
    OrderCard { conversation: String, pos: u64, seq: u64, order_json: String, ts: i64 },
}

impl From<LogEventV1> for LogEvent {
    fn from(e: LogEventV1) -> LogEvent {
        match e {
            LogEventV1::Message { conversation, customer, seq, ts, kind, author, text, reply_to, client_id, order_json } => {
                LogEvent::Message { conversation, customer, seq, ts, kind, author, text, reply_to, client_id, order_json, attachments: Vec::new() }
            }
            LogEventV1::Edit { conversation, pos, seq, text, edited_at, by } => LogEvent::Edit { conversation, pos, seq, text, edited_at, by },
            LogEventV1::Delete { conversation, pos, seq, ts, by } => LogEvent::Delete { conversation, pos, seq, ts, by },
            LogEventV1::React { conversation, pos, seq, emoji, on, by, ts } => LogEvent::React { conversation, pos, seq, emoji, on, by, ts },
            LogEventV1::Read { conversation, side, delivered, seen, ts } => LogEvent::Read { conversation, side, delivered, seen, ts },
            LogEventV1::OrderCard { conversation, pos, seq, order_json, ts } => LogEvent::OrderCard { conversation, pos, seq, order_json, ts },
        }
    }
}

/// Who on a node receives a relayed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Audience {
    /// Every agent socket on the node.
    Staff,
    /// The sockets of the conversation's customer.
    Customer,
    /// Both.
    Both,
}

impl Audience {
    /// The side that must not receive a frame about its own action (typing).
    pub fn to_side(side: Side) -> Audience {
        match side {
            Side::Staff => Audience::Staff,
            Side::Customer => Audience::Customer,
        }
    }
}

/// A frame for the local sockets of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relay {
    pub audience: Audience,
    /// The conversation the frame is about (needed for `Customer` audiences).
    pub conversation: Option<String>,
    /// The event's position in the conversation (0: not a positioned event).
    pub pos: u64,
    /// The rendered JSON text frame.
    pub frame: String,
}

/// A points action for the worker to execute (the gateway validated it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoyaltyRequest {
    /// Names the reply list (`keys.loyalty_reply(id)`).
    pub id: String,
    pub customer: String,
    pub idempotency_key: String,
    pub action: PointsAction,
    pub by: Actor,
    /// The gateway stops waiting at this time (ms since the epoch); a worker
    /// that picks the request up later drops it unexecuted, so a timed-out
    /// request (503) almost never takes effect behind the agent's back.
    pub deadline_ms: i64,
}

/// The worker's answer to a [`LoyaltyRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoyaltyReply {
    Done(PointsOutcome),
    Failed { code: ErrorCode, message: String },
}

fn config() -> bincode::config::Configuration<bincode::config::LittleEndian, bincode::config::Varint, bincode::config::Limit<MAX_ENVELOPE_BYTES>> {
    bincode::config::standard().with_limit::<MAX_ENVELOPE_BYTES>()
}

/// Encodes `value` behind the version byte.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![ENVELOPE_VERSION];
    // Encoding plain owned data into a Vec cannot fail except over the size
    // limit, which callers rule out by validating texts first.
    match bincode::serde::encode_to_vec(value, config()) {
        Ok(body) => out.extend_from_slice(&body),
        Err(_) => out.clear(),
    }
    out
}

/// A type carried in envelopes, and how to read what the previous version wrote.
pub trait Versioned: serde::de::DeserializeOwned {
    /// The shape version `ENVELOPE_VERSION - 1` wrote; `Self` when unchanged.
    type Previous: serde::de::DeserializeOwned + Into<Self>;
}

// Version 2 added message attachments; the other types did not change.
impl Versioned for LogEvent {
    type Previous = LogEventV1;
}
impl Versioned for Relay {
    type Previous = Relay;
}
impl Versioned for LoyaltyRequest {
    type Previous = LoyaltyRequest;
}
impl Versioned for LoyaltyReply {
    type Previous = LoyaltyReply;
}
impl Versioned for PointsOutcome {
    type Previous = PointsOutcome;
}

/// Decodes an envelope written by [`encode`] at the current version or the
/// one before; untrusted bytes are safe here.
pub fn decode<T: Versioned>(bytes: &[u8]) -> Result<T, EnvelopeError> {
    decode_at(bytes, ENVELOPE_VERSION)
}

/// [`decode`] for a reader at version `current` (tests play the next release).
fn decode_at<T: Versioned>(bytes: &[u8], current: u8) -> Result<T, EnvelopeError> {
    let (&v, body) = bytes.split_first().ok_or(EnvelopeError::Empty)?;
    if v == current {
        body_of::<T>(body)
    } else if current > FIRST_ENVELOPE_VERSION && v == current - 1 {
        body_of::<T::Previous>(body).map(Into::into)
    } else {
        Err(EnvelopeError::Version(v))
    }
}

fn body_of<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, EnvelopeError> {
    if body.len() > MAX_ENVELOPE_BYTES {
        return Err(EnvelopeError::TooLarge);
    }
    let (value, used) = bincode::serde::decode_from_slice(body, config()).map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    if used != body.len() {
        return Err(EnvelopeError::Decode("trailing bytes".into()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::UserKind;

    #[test]
    fn round_trip() {
        let e = LogEvent::Message {
            conversation: "c1".into(),
            customer: CustomerRef { id: "c1".into(), username: "ann".into(), avatar_url: None },
            seq: 7,
            ts: 1,
            kind: MessageKind::Customer,
            author: Some(UserRef { kind: UserKind::Customer, id: "c1".into(), username: "ann".into() }),
            text: "héllo".into(),
            reply_to: Some(ReplyRef { seq: 3, excerpt: "x".into() }),
            client_id: None,
            order_json: None,
            attachments: vec![Attachment {
                id: "0123456789abcdef0123456789abcdef".into(),
                name: "receipt.png".into(),
                size: 12,
                content_type: "image/png".into(),
                url: "/api/attachments/0123456789abcdef0123456789abcdef".into(),
                thumbnail_url: None,
                width: Some(2),
                height: Some(1),
            }],
        };
        let b = encode(&e);
        assert_eq!(b[0], ENVELOPE_VERSION);
        assert_eq!(decode::<LogEvent>(&b).unwrap(), e);
        let r = Relay { audience: Audience::Both, conversation: Some("c1".into()), pos: 3, frame: "{}".into() };
        assert_eq!(decode::<Relay>(&encode(&r)).unwrap(), r);
        let o = LogEvent::OrderCard { conversation: "c1".into(), pos: 9, seq: 4, order_json: "{}".into(), ts: 1 };
        assert_eq!(decode::<LogEvent>(&encode(&o)).unwrap(), o);
        let q = LoyaltyRequest {
            id: "r".into(),
            customer: "c1".into(),
            idempotency_key: "k".into(),
            action: PointsAction::Award { amount: 5, reason: Some("sorry".into()) },
            by: Actor { id: "a".into(), username: "ann".into(), display_name: Some("Ann".into()) },
            deadline_ms: 7,
        };
        assert_eq!(decode::<LoyaltyRequest>(&encode(&q)).unwrap(), q);
        let f = LoyaltyReply::Failed { code: ErrorCode::Conflict, message: "x".into() };
        assert_eq!(decode::<LoyaltyReply>(&encode(&f)).unwrap(), f);
    }

    /// The split encoding gives exactly `encode`'s bytes, at every varint width.
    /// The next release (a reader at version N+1) still reads what today's
    /// writers write (version N), through the type's previous shape.
    #[test]
    fn a_reader_reads_the_previous_version() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Old {
            a: String,
        }
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct New {
            a: String,
            b: Option<u64>,
        }
        impl From<Old> for New {
            fn from(o: Old) -> New {
                New { a: o.a, b: None }
            }
        }
        impl Versioned for New {
            type Previous = Old;
        }
        let next = ENVELOPE_VERSION + 1;
        let old = encode(&Old { a: "x".into() });
        assert_eq!(old[0], ENVELOPE_VERSION);
        assert_eq!(decode_at::<New>(&old, next), Ok(New { a: "x".into(), b: None }));
        let mut new = vec![next];
        new.extend(&encode(&New { a: "y".into(), b: Some(3) })[1..]);
        assert_eq!(decode_at::<New>(&new, next), Ok(New { a: "y".into(), b: Some(3) }));
        // Unchanged types read both versions as themselves.
        let r = Relay { audience: Audience::Staff, conversation: None, pos: 1, frame: "{}".into() };
        assert_eq!(decode_at::<Relay>(&encode(&r), next), Ok(r));
        // Two versions back is too old; today's reader does not know N+1.
        let mut older = encode(&Old { a: "x".into() });
        older[0] = FIRST_ENVELOPE_VERSION - 1;
        assert_eq!(decode_at::<New>(&old, next + 1), Err(EnvelopeError::Version(ENVELOPE_VERSION)));
        assert_eq!(decode::<New>(&new), Err(EnvelopeError::Version(next)));
        // Nothing before the first version is read (there was none).
        assert_eq!(decode::<Relay>(&older), Err(EnvelopeError::Version(older[0])));
    }

    /// What a version-1 gateway logged still reads, as a message without attachments.
    #[test]
    fn version_1_log_events_read_without_attachments() {
        let old = LogEventV1::Message {
            conversation: "c1".into(),
            customer: CustomerRef { id: "c1".into(), username: "ann".into(), avatar_url: None },
            seq: 3,
            ts: 1,
            kind: MessageKind::Customer,
            author: None,
            text: "hi".into(),
            reply_to: None,
            client_id: None,
            order_json: None,
        };
        let mut bytes = encode(&old);
        bytes[0] = 1;
        match decode::<LogEvent>(&bytes).unwrap() {
            LogEvent::Message { text, attachments, seq, .. } => assert_eq!((text.as_str(), attachments.len(), seq), ("hi", 0, 3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode::<LogEvent>(&[]), Err(EnvelopeError::Empty));
        assert_eq!(decode::<LogEvent>(&[9, 1, 2]), Err(EnvelopeError::Version(9)));
        assert!(decode::<LogEvent>(&[ENVELOPE_VERSION, 200, 200, 200]).is_err());
        // A length prefix claiming a huge string must not allocate it.
        assert!(decode::<Relay>(&[ENVELOPE_VERSION, 0, 0, 0, 0xfc, 0xff, 0xff, 0xff, 0x7f]).is_err());
    }
}

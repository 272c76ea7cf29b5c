//! The client wire protocol: JSON text frames, each an object with `"type"`.
//!
//! Client frames are parsed in two steps: [`RawFrame`] accepts any object with
//! the known field types (so the `rid` can be echoed even when a field is
//! missing), then [`RawFrame::into_frame`] checks each type's fields and limits
//! and names what is wrong.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::ids::{valid_attachment_id, valid_client_id, valid_id};
use crate::limits::{MAX_ATTACHMENTS, MAX_TEXT_CHARS};

/// Error codes a client sees. Stable: clients switch on them.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Invalid,
    Forbidden,
    NotFound,
    TooLarge,
    RateLimited,
    Unavailable,
    Unauthorized,
    Conflict,
    /// An upload whose content is not of an allowed type (HTTP 415).
    UnsupportedType,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Conflict => "conflict",
            ErrorCode::UnsupportedType => "unsupported_type",
        }
    }
}

/// A frame that could not be accepted: the code and a plain message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: ErrorCode,
    pub message: String,
}

impl FrameError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }
}

/// The six reactions.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Emoji {
    ThumbsUp,
    Heart,
    Laughing,
    Surprised,
    Sad,
    Fire,
}

impl Emoji {
    pub const ALL: [Emoji; 6] =
        [Emoji::ThumbsUp, Emoji::Heart, Emoji::Laughing, Emoji::Surprised, Emoji::Sad, Emoji::Fire];
    pub fn as_str(self) -> &'static str {
        match self {
            Emoji::ThumbsUp => "thumbs_up",
            Emoji::Heart => "heart",
            Emoji::Laughing => "laughing",
            Emoji::Surprised => "surprised",
            Emoji::Sad => "sad",
            Emoji::Fire => "fire",
        }
    }
    pub fn parse(s: &str) -> Option<Emoji> {
        Emoji::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// Which side of a conversation someone is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Customer,
    Staff,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Customer => "customer",
            Side::Staff => "staff",
        }
    }
    pub fn other(self) -> Side {
        match self {
            Side::Customer => Side::Staff,
            Side::Staff => Side::Customer,
        }
    }
}

/// Kind of a connected user, as the `hello` frame names it.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    Agent,
    Customer,
}

impl UserKind {
    pub fn side(self) -> Side {
        match self {
            UserKind::Agent => Side::Staff,
            UserKind::Customer => Side::Customer,
        }
    }
}

/// Who did something: `{kind, id, username}`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRef {
    pub kind: UserKind,
    pub id: String,
    pub username: String,
}

// ---------------------------------------------------------------- client -> server

/// Every field any client frame may carry; unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct RawFrame {
    #[serde(rename = "type")]
    pub ty: Option<String>,
    pub rid: Option<String>,
    pub conversation: Option<String>,
    pub client_id: Option<String>,
    pub text: Option<String>,
    pub reply_to: Option<u64>,
    pub seq: Option<u64>,
    pub emoji: Option<String>,
    pub on: Option<bool>,
    pub positions: Option<HashMap<String, u64>>,
    pub epoch: Option<String>,
    pub after: Option<u64>,
    pub attachments: Option<Vec<String>>,
}

/// A validated client frame. A client may add `rid` to any of them.
//
// The servers parse `RawFrame` and never serialise this; under test it derives
// `Serialize` in the wire's shape, the shape the TypeScript type is generated
// from, and `ts_bindings::client_frames_round_trip` parses that back.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(Serialize, ts_rs::TS), serde(tag = "type", rename_all = "snake_case"))]
pub enum ClientFrame {
    Send {
        conversation: String,
        client_id: String,
        text: String,
        #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none", default))]
        reply_to: Option<u64>,
        /// Ids of the sender's own uploads (`POST /api/attachments`), at most
        /// [`MAX_ATTACHMENTS`]; with at least one, `text` may be empty.
        #[cfg_attr(test, serde(skip_serializing_if = "Vec::is_empty", default), ts(optional = nullable))]
        attachments: Vec<String>,
    },
    Edit { conversation: String, seq: u64, text: String },
    Delete { conversation: String, seq: u64 },
    React { conversation: String, seq: u64, emoji: Emoji, on: bool },
    Typing { conversation: String },
    Delivered { conversation: String, seq: u64 },
    Seen { conversation: String, seq: u64 },
    /// `epoch`: the epoch the positions were obtained in (a different one means reload).
    Resume {
        // On the wire an object `{conversation: pos}`; sorted pairs here.
        #[cfg_attr(test, serde(serialize_with = "ts_bindings::positions_as_map"), ts(as = "HashMap<String, u64>"))]
        positions: Vec<(String, u64)>,
        #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none", default))]
        epoch: Option<String>,
    },
    /// Agents: receive this conversation's live events, after replaying those after `after`.
    Watch { conversation: String, after: u64 },
    /// Agents: stop receiving this conversation's live events.
    Unwatch { conversation: String },
    Ping,
}

impl ClientFrame {
    /// The frame's `type`, for metrics labels (a bounded set).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientFrame::Send { .. } => "send",
            ClientFrame::Edit { .. } => "edit",
            ClientFrame::Delete { .. } => "delete",
            ClientFrame::React { .. } => "react",
            ClientFrame::Typing { .. } => "typing",
            ClientFrame::Delivered { .. } => "delivered",
            ClientFrame::Seen { .. } => "seen",
            ClientFrame::Resume { .. } => "resume",
            ClientFrame::Watch { .. } => "watch",
            ClientFrame::Unwatch { .. } => "unwatch",
            ClientFrame::Ping => "ping",
        }
    }
}

/// Most conversations one agent socket may watch at once.
pub const MAX_WATCHED: usize = 100;
/// Most conversations one `resume` may name.
pub const MAX_RESUME_POSITIONS: usize = 1000;
/// Longest `rid` echoed back.
pub const MAX_RID_LEN: usize = 64;

/// Parses one text frame. On failure returns the `rid` (when readable) with the error.
pub fn parse_client_frame(bytes: &[u8]) -> Result<(Option<String>, ClientFrame), (Option<String>, FrameError)> {
    let raw: RawFrame = match serde_json::from_slice(bytes) {
        Ok(raw) => raw,
        Err(e) => {
            // A field of the wrong type still leaves a readable rid: try once more loosely.
            let rid = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .and_then(|v| v.get("rid").and_then(|r| r.as_str()).map(str::to_string))
                .filter(|r| r.len() <= MAX_RID_LEN);
            let msg = if e.is_syntax() || e.is_eof() {
                "malformed JSON: expected an object with a \"type\"".to_string()
            } else {
                format!("bad field: {e}")
            };
            return Err((rid, FrameError::invalid(msg)));
        }
    };
    let rid = raw.rid.clone();
    if rid.as_ref().is_some_and(|r| r.len() > MAX_RID_LEN) {
        return Err((None, FrameError::invalid(format!("rid longer than {MAX_RID_LEN} characters"))));
    }
    raw.into_frame().map(|f| (rid.clone(), f)).map_err(|e| (rid, e))
}

fn need<T>(v: Option<T>, ty: &str, field: &str) -> Result<T, FrameError> {
    v.ok_or_else(|| FrameError::invalid(format!("{ty}: missing field `{field}`")))
}

fn conversation(v: Option<String>, ty: &str) -> Result<String, FrameError> {
    let c = need(v, ty, "conversation")?;
    if !valid_id(&c) {
        return Err(FrameError::invalid(format!("{ty}: `conversation` is not a valid id")));
    }
    Ok(c)
}

fn seq(v: Option<u64>, ty: &str) -> Result<u64, FrameError> {
    let s = need(v, ty, "seq")?;
    if s == 0 {
        return Err(FrameError::invalid(format!("{ty}: `seq` starts at 1")));
    }
    Ok(s)
}

/// Checks a message text: 1..=4000 characters, not only whitespace.
pub fn check_text(text: &str, ty: &str) -> Result<(), FrameError> {
    if text.trim().is_empty() {
        return Err(FrameError::invalid(format!("{ty}: `text` is empty")));
    }
    let n = text.chars().count();
    if n > MAX_TEXT_CHARS {
        return Err(FrameError::new(
            ErrorCode::TooLarge,
            format!("{ty}: `text` has {n} characters, the limit is {MAX_TEXT_CHARS}"),
        ));
    }
    Ok(())
}

impl RawFrame {
    pub fn into_frame(self) -> Result<ClientFrame, FrameError> {
        let ty = self.ty.ok_or_else(|| FrameError::invalid("missing field `type`"))?;
        let t = ty.as_str();
        Ok(match t {
            "send" => {
                let conversation = conversation(self.conversation, t)?;
                let client_id = need(self.client_id, t, "client_id")?;
                if !valid_client_id(&client_id) {
                    return Err(FrameError::invalid("send: `client_id` must be a UUID"));
                }
                let attachments = self.attachments.unwrap_or_default();
                if attachments.len() > MAX_ATTACHMENTS {
                    return Err(FrameError::new(
                        ErrorCode::TooLarge,
                        format!("send: at most {MAX_ATTACHMENTS} attachments, got {}", attachments.len()),
                    ));
                }
                if attachments.iter().any(|a| !valid_attachment_id(a)) {
                    return Err(FrameError::invalid("send: every `attachments` entry must be an upload id"));
                }
                for (i, a) in attachments.iter().enumerate() {
                    if attachments[..i].contains(a) {
                        return Err(FrameError::invalid(format!("send: attachment `{a}` is named twice")));
                    }
                }
                // A message needs text, or at least one attachment.
                let mut text = if attachments.is_empty() { need(self.text, t, "text")? } else { self.text.unwrap_or_default() };
                if !attachments.is_empty() && text.trim().is_empty() {
                    text.clear();
                } else {
                    check_text(&text, t)?;
                }
                if self.reply_to == Some(0) {
                    return Err(FrameError::invalid("send: `reply_to` starts at 1"));
                }
                ClientFrame::Send { conversation, client_id, text, reply_to: self.reply_to, attachments }
            }
            "edit" => {
                let conversation = conversation(self.conversation, t)?;
                let seq = seq(self.seq, t)?;
                let text = need(self.text, t, "text")?;
                check_text(&text, t)?;
                ClientFrame::Edit { conversation, seq, text }
            }
            "delete" => ClientFrame::Delete { conversation: conversation(self.conversation, t)?, seq: seq(self.seq, t)? },
            "react" => {
                let conversation = conversation(self.conversation, t)?;
                let seq = seq(self.seq, t)?;
                let e = need(self.emoji, t, "emoji")?;
                let emoji = Emoji::parse(&e).ok_or_else(|| {
                    FrameError::invalid("react: `emoji` must be one of thumbs_up, heart, laughing, surprised, sad, fire")
                })?;
                let on = need(self.on, t, "on")?;
                ClientFrame::React { conversation, seq, emoji, on }
            }
            "typing" => ClientFrame::Typing { conversation: conversation(self.conversation, t)? },
            "delivered" => ClientFrame::Delivered { conversation: conversation(self.conversation, t)?, seq: seq(self.seq, t)? },
            "seen" => ClientFrame::Seen { conversation: conversation(self.conversation, t)?, seq: seq(self.seq, t)? },
            "resume" => {
                let positions = need(self.positions, t, "positions")?;
                if positions.len() > MAX_RESUME_POSITIONS {
                    return Err(FrameError::new(
                        ErrorCode::TooLarge,
                        format!("resume: at most {MAX_RESUME_POSITIONS} conversations"),
                    ));
                }
                if let Some(bad) = positions.keys().find(|k| !valid_id(k)) {
                    return Err(FrameError::invalid(format!("resume: `{}` is not a valid conversation id", crate::excerpt(bad, 64))));
                }
                let mut positions: Vec<_> = positions.into_iter().collect();
                positions.sort();
                if self.epoch.as_ref().is_some_and(|e| e.len() > 64) {
                    return Err(FrameError::invalid("resume: `epoch` longer than 64 characters"));
                }
                ClientFrame::Resume { positions, epoch: self.epoch }
            }
            "watch" => ClientFrame::Watch { conversation: conversation(self.conversation, t)?, after: self.after.unwrap_or(0) },
            "unwatch" => ClientFrame::Unwatch { conversation: conversation(self.conversation, t)? },
            "ping" => ClientFrame::Ping,
            other => {
                return Err(FrameError::invalid(format!(
                    "unknown frame type `{}`",
                    crate::excerpt(other, 32)
                )))
            }
        })
    }
}

// ---------------------------------------------------------------- server -> client

/// A quoted message in a reply.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRef {
    pub seq: u64,
    pub excerpt: String,
}

/// Kind of a message in a conversation.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Customer,
    Staff,
    System,
    Order,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Customer => "customer",
            MessageKind::Staff => "staff",
            MessageKind::System => "system",
            MessageKind::Order => "order",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "customer" => MessageKind::Customer,
            "staff" => MessageKind::Staff,
            "system" => MessageKind::System,
            "order" => MessageKind::Order,
            _ => return None,
        })
    }
}

/// A message as clients see it (live and in history pages).
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub seq: u64,
    pub kind: MessageKind,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub author: Option<UserRef>,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reply_to: Option<ReplyRef>,
    pub ts: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub edited_at: Option<i64>,
    pub deleted: bool,
    pub reactions: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    #[cfg_attr(test, ts(type = "unknown"))]
    pub order: Option<serde_json::Value>,
    /// The author's `client_id`, so the sender's other tabs can match their outbox.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
    /// Files and photos sent with the message (empty when deleted).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    #[cfg_attr(test, ts(optional = nullable))]
    pub attachments: Vec<Attachment>,
}

/// An uploaded file as messages and the upload reply carry it. `url` and
/// `thumbnail_url` need the reader's authorization (a bearer token, or the
/// signed link of `GET /api/attachments/{id}/link`).
// Every field is always written (no `skip_serializing_if`): this type also
// travels in bincode envelopes, which cannot skip fields.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    /// The uploader's file name (cleaned: no path, no control characters).
    pub name: String,
    pub size: u64,
    /// What the content is (sniffed from its bytes, never from the name).
    pub content_type: String,
    pub url: String,
    /// Images only: a small JPEG or PNG of at most 320x320.
    #[serde(default)]
    pub thumbnail_url: Option<String>,
    /// Images only: the pixel size.
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
}

impl Attachment {
    pub fn is_image(&self) -> bool {
        self.content_type.starts_with("image/")
    }
}

/// What a chat-list preview and a reply quote show of a message: its text,
/// or for a message of attachments only, "Photo" (the first is an image) or
/// "File: <name>".
pub fn message_excerpt(text: &str, attachments: &[Attachment]) -> String {
    if !text.trim().is_empty() {
        return crate::excerpt(text, crate::limits::EXCERPT_CHARS);
    }
    match attachments.first() {
        Some(a) if a.is_image() => "Photo".to_string(),
        Some(a) => crate::excerpt(&format!("File: {}", a.name), crate::limits::EXCERPT_CHARS),
        None => String::new(),
    }
}

/// A customer as a chat-list row shows it.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRef {
    pub id: String,
    pub username: String,
    // Always written (null when absent): this type also travels in bincode
    // envelopes, which cannot skip fields.
    #[serde(default)]
    pub avatar_url: Option<String>,
}

/// A chat-list row.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationRow {
    pub id: String,
    pub customer: CustomerRef,
    pub preview: String,
    pub last_ts: i64,
    pub unread: u64,
    /// Position of the last event, for resume.
    #[serde(default)]
    pub last_seq: u64,
}

/// Frames the server sends. `pos` is the event's position in the
/// conversation's event sequence (the same counter as message `seq`); a client
/// keeps the highest `pos` it holds per conversation and sends it in `resume`.
#[cfg_attr(test, derive(ts_rs::TS))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        user: UserRef,
        epoch: String,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        conversation: Option<String>,
        /// Which gateway node holds this socket (for operators and tests).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        node: Option<String>,
    },
    Ack {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        rid: Option<String>,
        conversation: String,
        seq: u64,
        ts: i64,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pos: Option<u64>,
        #[serde(skip_serializing_if = "std::ops::Not::not", default)]
        duplicate: bool,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        rid: Option<String>,
        code: ErrorCode,
        message: String,
    },
    Message {
        conversation: String,
        pos: u64,
        message: Message,
    },
    Edited {
        conversation: String,
        pos: u64,
        seq: u64,
        text: String,
        edited_at: i64,
    },
    Deleted {
        conversation: String,
        pos: u64,
        seq: u64,
    },
    Reactions {
        conversation: String,
        pos: u64,
        seq: u64,
        reactions: BTreeMap<String, u64>,
        by: UserRef,
        emoji: Emoji,
        on: bool,
    },
    Typing {
        conversation: String,
        who: UserRef,
        expires_in_ms: u64,
    },
    Receipt {
        conversation: String,
        delivered_seq: u64,
        seen_seq: u64,
    },
    Presence {
        customer: String,
        online: bool,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        last_seen: Option<i64>,
    },
    Conversation(ConversationRow),
    Points {
        customer: String,
        balance: i64,
        /// The balance's version (ledger length): frames of concurrent
        /// actions may arrive out of order; keep the highest version.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        version: Option<u64>,
    },
    Replay {
        conversation: String,
        from_seq: u64,
        complete: bool,
        /// Highest position the replay brought (absent when nothing was missed).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        to_seq: Option<u64>,
    },
    Pong,
    /// An order card (the message at `seq`, kind `order`) changed: replace
    /// its `order` field. Positioned like `edited`.
    Order {
        conversation: String,
        pos: u64,
        seq: u64,
        #[cfg_attr(test, ts(type = "unknown"))]
        order: serde_json::Value,
    },
}

impl ServerFrame {
    pub fn error(rid: Option<String>, e: FrameError) -> Self {
        ServerFrame::Error { rid, code: e.code, message: e.message }
    }
    /// How every [`ServerFrame::Conversation`] (a chat-list row) starts as
    /// JSON: relays tell rows from other frames by it without parsing.
    pub const CONVERSATION_PREFIX: &'static str = r#"{"type":"conversation","#;

    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: no maps with non-string keys, no floats.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\",\"code\":\"unavailable\",\"message\":\"encoding\"}"))
    }
}

#[cfg(test)]
mod ts_bindings;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClientFrame, FrameError> {
        parse_client_frame(s.as_bytes()).map(|(_, f)| f).map_err(|(_, e)| e)
    }

    #[test]
    fn chat_list_rows_start_with_their_prefix() {
        let row = ConversationRow { id: "c1".into(), customer: CustomerRef { id: "c1".into(), username: "u".into(), avatar_url: None }, preview: "p".into(), last_ts: 1, unread: 2, last_seq: 3 };
        assert!(ServerFrame::Conversation(row).to_json().starts_with(ServerFrame::CONVERSATION_PREFIX));
        assert!(!ServerFrame::Pong.to_json().starts_with(ServerFrame::CONVERSATION_PREFIX));
    }

    #[test]
    fn send_ok() {
        let f = parse(r#"{"type":"send","rid":"1","conversation":"c1","client_id":"0f8fad5b-d9cb-469f-a165-70867728950e","text":"hi","extra":1}"#).unwrap();
        assert!(matches!(f, ClientFrame::Send { ref text, .. } if text == "hi"));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse(r#"{"type":"send","conversation":"c1","text":"hi"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
        assert!(e.message.contains("client_id"), "{}", e.message);
        let e = parse("{not json").unwrap_err();
        assert!(e.message.contains("malformed"));
        let e = parse(r#"{"type":"nope"}"#).unwrap_err();
        assert!(e.message.contains("unknown frame type"));
        let long = "x".repeat(4001);
        let e = parse(&format!(r#"{{"type":"edit","conversation":"c","seq":1,"text":"{long}"}}"#)).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
        let e = parse(r#"{"type":"react","conversation":"c","seq":1,"emoji":"poop","on":true}"#).unwrap_err();
        assert!(e.message.contains("emoji"));
    }

    #[test]
    fn send_with_attachments() {
        let id = "0123456789abcdef0123456789abcdef";
        let cid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        // Text may be empty (or absent) with at least one attachment.
        let f = parse(&format!(r#"{{"type":"send","conversation":"c","client_id":"{cid}","attachments":["{id}"]}}"#)).unwrap();
        assert!(matches!(f, ClientFrame::Send { ref text, ref attachments, .. } if text.is_empty() && attachments.len() == 1));
        let f = parse(&format!(r#"{{"type":"send","conversation":"c","client_id":"{cid}","text":" ","attachments":["{id}"]}}"#)).unwrap();
        assert!(matches!(f, ClientFrame::Send { ref text, .. } if text.is_empty()));
        // Without attachments, text is still required.
        let e = parse(&format!(r#"{{"type":"send","conversation":"c","client_id":"{cid}","text":"","attachments":[]}}"#)).unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let e = parse(&format!(r#"{{"type":"send","conversation":"c","client_id":"{cid}","attachments":["../etc"]}}"#)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Invalid);
        let e = parse(&format!(r#"{{"type":"send","conversation":"c","client_id":"{cid}","attachments":["{id}","{id}"]}}"#)).unwrap_err();
        assert!(e.message.contains("twice"), "{}", e.message);
        let many: Vec<String> = (0..11).map(|i| format!("\"{i:032x}\"")).collect();
        let e = parse(&format!(r#"{{"type":"send","conversation":"c","client_id":"{cid}","attachments":[{}]}}"#, many.join(","))).unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
    }

    #[test]
    fn excerpts_of_attachments() {
        let a = |ct: &str, name: &str| Attachment {
            id: "x".into(),
            name: name.into(),
            size: 1,
            content_type: ct.into(),
            url: String::new(),
            thumbnail_url: None,
            width: None,
            height: None,
        };
        assert_eq!(message_excerpt("", &[a("image/png", "p.png")]), "Photo");
        assert_eq!(message_excerpt("", &[a("application/pdf", "menu.pdf")]), "File: menu.pdf");
        assert_eq!(message_excerpt("look", &[a("image/png", "p.png")]), "look");
    }

    #[test]
    fn rid_survives_bad_field_types() {
        let (rid, e) = parse_client_frame(br#"{"type":"seen","rid":"r9","conversation":"c","seq":"x"}"#).unwrap_err();
        assert_eq!(rid.as_deref(), Some("r9"));
        assert_eq!(e.code, ErrorCode::Invalid);
    }

    #[test]
    fn text_limit_counts_chars_not_bytes() {
        assert!(check_text(&"é".repeat(4000), "send").is_ok());
        assert!(check_text(&"é".repeat(4001), "send").is_err());
    }

    #[test]
    fn server_frames_are_tagged() {
        let j = ServerFrame::Pong.to_json();
        assert_eq!(j, r#"{"type":"pong"}"#);
        let j = ServerFrame::Receipt { conversation: "c".into(), delivered_seq: 2, seen_seq: 1 }.to_json();
        assert!(j.contains(r#""type":"receipt""#));
    }
}

//! The two wire dialects the load tool speaks, behind one interface:
//! our JSON frames (`docs/protocol.md`) and Engine.IO v4 / Socket.IO v5
//! packets for the peer (`0{..}` open, `40` connect, `42[event,data]`
//! events, `42<id>[..]` with an ack id, `43<id>[..]` acks, `2`/`3` ping/pong).
//!
//! Incoming frames are scanned, not parsed into trees: the tool must read
//! hundreds of thousands of frames per second next to the servers it
//! measures, and only a few fields matter (type, conversation, seq, text, rid).
//!
//! Agents watch conversations before the traffic starts: ours with a `watch`
//! frame (`rid` `w<i>`; answered by `replay`, or an `error` with that rid),
//! the peer with a `watch` event carrying ack id [`WATCH_ACK_BASE`] + i (its
//! ack is the answer). Sends use ack ids/rids from their own number space, so
//! a late watch answer is never taken for a send's.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Our gateway (`/ws`, JSON frames).
    Ours,
    /// The Socket.IO peer (`loadtest/peers/socketio`).
    Socketio,
}

impl Target {
    pub fn ws_path(self) -> &'static str {
        match self {
            Target::Ours => "/ws",
            Target::Socketio => "/socket.io/?EIO=4&transport=websocket",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Target::Ours => "ours",
            Target::Socketio => "socketio",
        }
    }
}

/// The filler after a stamp (ASCII, nothing to escape in JSON).
const FILLER: &str = "lorem ipsum dolor sit amet consectetur";

/// The stamp every load message carries: who sent it, its number from that
/// sender, and when it was scheduled (µs since the run's epoch), then a
/// filler. `bytes`: the text's length in bytes (the filler repeated or cut
/// to fit; never shorter than the stamp itself, ~20-30 bytes); None: the
/// stamp and one filler, a typical short chat line (~64 bytes).
pub fn stamp(origin: u32, k: u64, sched_us: u64, bytes: Option<usize>) -> String {
    let mut s = format!("lt|{origin}|{k}|{sched_us}|");
    match bytes {
        None => s.push_str(FILLER),
        Some(n) => {
            while s.len() < n {
                let left = n - s.len();
                s.push_str(&FILLER[..left.min(FILLER.len())]);
                if s.len() < n {
                    s.push(' ');
                }
            }
            // No trailing blank (a server may trim it and change the size).
            if s.ends_with(' ') {
                s.pop();
                s.push('.');
            }
        }
    }
    s
}

/// Parses a stamp back: (origin, k, sched_us).
pub fn parse_stamp(text: &str) -> Option<(u32, u64, u64)> {
    let mut p = text.strip_prefix("lt|")?.split('|');
    Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?, p.next()?.parse().ok()?))
}

fn rid(k: u64) -> String {
    format!("k{k}")
}

pub fn encode_send(t: Target, conv: &str, k: u64, text: &str) -> String {
    let client_id = uuid::Uuid::new_v4();
    match t {
        Target::Ours => format!(
            r#"{{"type":"send","rid":"{}","conversation":"{conv}","client_id":"{client_id}","text":"{text}"}}"#,
            rid(k)
        ),
        // Ack ids start at 1 (0 is valid too, but keep them apart from "no id").
        Target::Socketio => format!(r#"42{}["send",{{"conversation":"{conv}","client_id":"{client_id}","text":"{text}"}}]"#, k + 1),
    }
}

pub fn encode_typing(t: Target, conv: &str) -> String {
    match t {
        Target::Ours => format!(r#"{{"type":"typing","conversation":"{conv}"}}"#),
        Target::Socketio => format!(r#"42["typing",{{"conversation":"{conv}"}}]"#),
    }
}

pub fn encode_seen(t: Target, conv: &str, seq: u64) -> String {
    match t {
        Target::Ours => format!(r#"{{"type":"seen","conversation":"{conv}","seq":{seq}}}"#),
        Target::Socketio => format!(r#"42["seen",{{"conversation":"{conv}","seq":{seq}}}]"#),
    }
}

/// Socket.IO ack ids of `watch` events start here (sends use 1 + their number).
pub const WATCH_ACK_BASE: u64 = 1_000_000_000;

/// Agents: receive conversation `conv`'s live events (the `i`-th watch of this socket).
pub fn encode_watch(t: Target, conv: &str, i: u64) -> String {
    match t {
        Target::Ours => format!(r#"{{"type":"watch","rid":"w{i}","conversation":"{conv}","after":0}}"#),
        Target::Socketio => format!(r#"42{}["watch",{{"conversation":"{conv}"}}]"#, WATCH_ACK_BASE + i),
    }
}

/// The Socket.IO connect packet with the peer's trusted auth.
pub fn sio_connect(kind: &str, id: &str) -> String {
    format!(r#"40{{"kind":"{kind}","id":"{id}"}}"#)
}

/// What an incoming text frame is, as far as the load tool cares.
#[derive(Debug, PartialEq, Eq)]
pub enum In<'a> {
    Message { conv: &'a str, seq: u64, text: &'a str },
    /// Reply to our send number `k`; `ok` false for an error reply.
    Ack { k: u64, ok: bool },
    /// Ours: the end of a `watch` answer (or of a `resume`'s, per conversation).
    Replay { conv: &'a str },
    /// Answer to our `i`-th watch: the peer's ack, or an error from ours
    /// (`refused`: its code, or `"error"` when the peer gives none).
    WatchAck { i: u64, refused: Option<&'a str> },
    /// A chat-list row (`conversation` frame or event).
    Row,
    /// Our `hello`, or Socket.IO's connect confirmation (`40`).
    Ready,
    /// Engine.IO open packet (`0{...}`).
    Open,
    /// Engine.IO ping (`2`): answer `3`.
    Ping,
    /// Refused (Socket.IO `44` connect error).
    Refused,
    Other,
}

/// The string value of the first `"field":"..."` at or after `from`.
fn str_field<'a>(s: &'a str, field: &str) -> Option<&'a str> {
    let pat = format!("\"{field}\":\"");
    let i = s.find(&pat)? + pat.len();
    let j = s[i..].find('"')?;
    Some(&s[i..i + j])
}

fn num_field(s: &str, field: &str) -> Option<u64> {
    let pat = format!("\"{field}\":");
    let i = s.find(&pat)? + pat.len();
    let end = s[i..].find(|c: char| !c.is_ascii_digit()).map(|j| i + j).unwrap_or(s.len());
    s[i..end].parse().ok()
}

pub fn scan(t: Target, s: &str) -> In<'_> {
    match t {
        Target::Ours => {
            let Some(ty) = str_field(s, "type") else { return In::Other };
            match ty {
                "message" => {
                    let Some(m) = s.find("\"message\":{").map(|i| &s[i..]) else { return In::Other };
                    match (str_field(s, "conversation"), num_field(m, "seq"), str_field(m, "text")) {
                        (Some(conv), Some(seq), Some(text)) => In::Message { conv, seq, text },
                        _ => In::Other,
                    }
                }
                "ack" | "error" => {
                    let rid = str_field(s, "rid").unwrap_or("");
                    if let Some(k) = rid.strip_prefix('k').and_then(|k| k.parse().ok()) {
                        In::Ack { k, ok: ty == "ack" }
                    } else if let Some(i) = rid.strip_prefix('w').and_then(|i| i.parse().ok()) {
                        In::WatchAck { i, refused: if ty == "ack" { None } else { Some(str_field(s, "code").unwrap_or("error")) } }
                    } else {
                        In::Other
                    }
                }
                "replay" => match str_field(s, "conversation") {
                    Some(conv) => In::Replay { conv },
                    None => In::Other,
                },
                "conversation" => In::Row,
                "hello" => In::Ready,
                _ => In::Other,
            }
        }
        Target::Socketio => {
            let b = s.as_bytes();
            match b.first() {
                Some(b'0') => In::Open,
                Some(b'2') if b.len() == 1 => In::Ping,
                Some(b'4') => match b.get(1) {
                    Some(b'0') => In::Ready,
                    Some(b'4') => In::Refused,
                    Some(b'2') if s[2..].starts_with("[\"message\",") => {
                        match (str_field(s, "conversation"), num_field(s, "seq"), str_field(s, "text")) {
                            (Some(conv), Some(seq), Some(text)) => In::Message { conv, seq, text },
                            _ => In::Other,
                        }
                    }
                    Some(b'2') if s[2..].starts_with("[\"conversation\",") => In::Row,
                    Some(b'3') => {
                        let digits = s[2..].find('[').map(|j| &s[2..2 + j]).unwrap_or("");
                        match digits.parse::<u64>() {
                            Ok(id) if id >= WATCH_ACK_BASE => {
                                In::WatchAck { i: id - WATCH_ACK_BASE, refused: s.contains("\"error\"").then(|| str_field(s, "error").unwrap_or("error")) }
                            }
                            Ok(id) if id >= 1 => In::Ack { k: id - 1, ok: !s.contains("\"error\"") },
                            _ => In::Other,
                        }
                    }
                    _ => In::Other,
                },
                _ => In::Other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_frames() {
        let m = r#"{"type":"message","conversation":"c1","pos":7,"message":{"seq":7,"kind":"customer","text":"lt|3|9|100|x","ts":1}}"#;
        assert_eq!(scan(Target::Ours, m), In::Message { conv: "c1", seq: 7, text: "lt|3|9|100|x" });
        assert_eq!(scan(Target::Ours, r#"{"type":"ack","rid":"k12","conversation":"c","seq":1,"ts":2}"#), In::Ack { k: 12, ok: true });
        assert_eq!(scan(Target::Ours, r#"{"type":"error","rid":"k3","code":"rate_limited","message":"m"}"#), In::Ack { k: 3, ok: false });
        assert_eq!(scan(Target::Ours, r#"{"type":"hello","user":{}}"#), In::Ready);
        assert_eq!(parse_stamp(&stamp(3, 9, 100, None)), Some((3, 9, 100)));
        let v: serde_json::Value = serde_json::from_str(&encode_send(Target::Ours, "c1", 4, "hi")).unwrap();
        assert_eq!(v["rid"], "k4");
        let w: serde_json::Value = serde_json::from_str(&encode_watch(Target::Ours, "c1", 3)).unwrap();
        assert_eq!((&w["type"], &w["conversation"], &w["after"], &w["rid"]), (&"watch".into(), &"c1".into(), &0.into(), &"w3".into()));
        assert_eq!(scan(Target::Ours, r#"{"type":"replay","conversation":"c1","from_seq":1,"complete":true}"#), In::Replay { conv: "c1" });
        assert_eq!(
            scan(Target::Ours, r#"{"type":"error","rid":"w3","code":"not_found","message":"no conversation"}"#),
            In::WatchAck { i: 3, refused: Some("not_found") }
        );
        assert_eq!(scan(Target::Ours, r#"{"type":"ack","rid":"w2","conversation":"c1","seq":0,"ts":1}"#), In::WatchAck { i: 2, refused: None });
        let row = r#"{"type":"conversation","id":"c1","customer":{"id":"c1","username":"c1","avatar_url":null},"preview":"lt|1|2|3|x","last_ts":1,"unread":1,"last_seq":4}"#;
        assert_eq!(scan(Target::Ours, row), In::Row);
    }

    #[test]
    fn stamps_have_the_asked_size() {
        assert_eq!(stamp(3, 9, 100, None), "lt|3|9|100|lorem ipsum dolor sit amet consectetur");
        for n in [30, 64, 130, 131, 1000] {
            let s = stamp(1234, 56_789, 7_999_700, Some(n));
            assert_eq!(s.len(), n, "{s:?}");
            assert_eq!(parse_stamp(&s), Some((1234, 56_789, 7_999_700)));
            assert!(!s.contains('"') && !s.contains('\\') && s.is_ascii() && !s.ends_with(' '));
        }
        // Never shorter than the stamp: the ledger needs it whole.
        assert_eq!(stamp(1, 2, 3, Some(4)), "lt|1|2|3|");
    }

    #[test]
    fn socketio_packets() {
        assert_eq!(scan(Target::Socketio, r#"0{"sid":"x","pingInterval":25000}"#), In::Open);
        assert_eq!(scan(Target::Socketio, r#"40{"sid":"y"}"#), In::Ready);
        assert_eq!(scan(Target::Socketio, "2"), In::Ping);
        assert_eq!(scan(Target::Socketio, r#"435[{"conversation":"c","seq":3,"ts":1}]"#), In::Ack { k: 4, ok: true });
        assert_eq!(scan(Target::Socketio, r#"431[{"error":"invalid"}]"#), In::Ack { k: 0, ok: false });
        let m = r#"42["message",{"conversation":"c2","message":{"seq":5,"kind":"customer","text":"lt|1|2|3|x"}}]"#;
        assert_eq!(scan(Target::Socketio, m), In::Message { conv: "c2", seq: 5, text: "lt|1|2|3|x" });
        assert!(encode_send(Target::Socketio, "c", 0, "t").starts_with("421[\"send\""));
        assert_eq!(encode_watch(Target::Socketio, "c2", 7), r#"421000000007["watch",{"conversation":"c2"}]"#);
        assert_eq!(scan(Target::Socketio, r#"431000000007[{"conversation":"c2"}]"#), In::WatchAck { i: 7, refused: None });
        assert_eq!(scan(Target::Socketio, r#"431000000001[{"error":"invalid"}]"#), In::WatchAck { i: 1, refused: Some("invalid") });
        let row = r#"42["conversation",{"id":"c2","preview":"lt|1|2|3|x","last_ts":1,"last_seq":5}]"#;
        assert_eq!(scan(Target::Socketio, row), In::Row);
    }
}

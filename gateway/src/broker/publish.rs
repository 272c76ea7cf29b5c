//! Publishing: the log shard entry for the workers, a frame on a
//! conversation's channel (the nodes holding a recipient are subscribed to
//! it), and the staff stream (what every agent gets: chat-list rows,
//! presence, points). Positioned events are published by their scripts,
//! atomically with their position; this is for the rest.

use std::time::Instant;

use redis::AsyncCommands;
use schema::envelope::{self, Audience, LogEvent, Relay};
use schema::keys::{self, FIELD};

use super::template::subst_position;
use super::Broker;
use crate::error::GatewayError;

/// What one publish call sends.
pub struct Publish<'a> {
    pub log: Option<&'a LogEvent>,
    /// An unpositioned frame for the conversation's channel (receipts).
    pub relay: Option<&'a Relay>,
}

/// A frame on a conversation's channel: `<audience><pos> <frame>` (`B12
/// {...}`; audience `C` customer, `S` staff, `B` both; pos 0 for an
/// unpositioned frame, which is final; a positioned frame is a template,
/// see [`subst_position`]). The scripts write the same for the events they
/// number.
pub fn payload(audience: Audience, pos: u64, frame: &str) -> String {
    let a = match audience {
        Audience::Customer => 'C',
        Audience::Staff => 'S',
        Audience::Both => 'B',
    };
    format!("{a}{pos} {frame}")
}

/// Reads a channel payload of `conv` back (a positioned frame filled in).
pub fn parse_payload(conv: &str, bytes: &[u8]) -> Option<Relay> {
    let s = std::str::from_utf8(bytes).ok()?;
    let audience = match s.as_bytes().first()? {
        b'C' => Audience::Customer,
        b'S' => Audience::Staff,
        b'B' => Audience::Both,
        _ => return None,
    };
    let sp = s.find(' ')?;
    let pos: u64 = s.get(1..sp)?.parse().ok()?;
    let body = &s[sp + 1..];
    let frame = if pos > 0 { subst_position(body, pos) } else { body.to_string() };
    Some(Relay { audience, conversation: Some(conv.to_string()), pos, frame })
}

impl Broker<'_> {
    /// One pipelined round trip: the log shard entry for the workers, and
    /// the frame on the conversation's channel.
    pub async fn publish(&self, p: Publish<'_>) -> Result<(), GatewayError> {
        let mut pipe = redis::pipe();
        if let Some(ev) = p.log {
            let shard = keys::shard_of(ev.conversation(), self.log_shards);
            pipe.cmd("XADD").arg(self.keys.log(shard)).arg("*").arg(FIELD).arg(envelope::encode(ev)).ignore();
        }
        if let Some(Relay { audience, conversation: Some(conv), pos, frame }) = p.relay {
            pipe.cmd("PUBLISH").arg(self.keys.channel(conv)).arg(payload(*audience, *pos, frame)).ignore();
        }
        let started = Instant::now();
        let mut conn = self.conn();
        pipe.query_async::<()>(&mut conn).await?;
        metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "publish").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Relays an unpositioned frame of a conversation (typing, receipt) to
    /// one side: one `PUBLISH`, which Redis drops when no node listens.
    pub async fn relay_frame(&self, audience: Audience, conv: &str, frame: String) -> Result<(), GatewayError> {
        let started = Instant::now();
        let mut conn = self.conn();
        let _: i64 = conn.publish(self.keys.channel(conv), payload(audience, 0, &frame)).await?;
        metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "publish").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Sends a frame to every agent socket of every node (presence, points):
    /// one entry in the staff stream, which every node reads.
    pub async fn to_all_staff(&self, conv: &str, frame: String) -> Result<(), GatewayError> {
        let relay = Relay { audience: Audience::Staff, conversation: Some(conv.to_string()), pos: 0, frame };
        let mut pipe = redis::pipe();
        redis_conn::xadd_capped(&mut pipe, &self.keys.staff_events(), schema::limits::STAFF_EVENTS_LEN, FIELD, &envelope::encode(&relay));
        let started = Instant::now();
        let mut conn = self.conn();
        pipe.query_async::<()>(&mut conn).await?;
        metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "publish").record(started.elapsed().as_secs_f64());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_fill_positions() {
        let p = payload(Audience::Both, 12, r#"{"type":"message","pos":0,"message":{"seq":0,"text":"a b"}}"#);
        assert_eq!(p, r#"B12 {"type":"message","pos":0,"message":{"seq":0,"text":"a b"}}"#);
        let r = parse_payload("c1", p.as_bytes()).unwrap();
        assert_eq!((r.audience, r.pos, r.conversation.as_deref()), (Audience::Both, 12, Some("c1")));
        assert_eq!(r.frame, r#"{"type":"message","pos":12,"message":{"seq":12,"text":"a b"}}"#);
        let t = parse_payload("c1", payload(Audience::Staff, 0, r#"{"type":"typing","pos":0,}"#).as_bytes()).unwrap();
        assert_eq!((t.audience, t.pos, t.frame.as_str()), (Audience::Staff, 0, r#"{"type":"typing","pos":0,}"#));
        assert!(parse_payload("c1", b"X1 {}").is_none());
        assert!(parse_payload("c1", b"Bx {}").is_none());
    }
}

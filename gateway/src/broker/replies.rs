//! The scripts' replies as types, parsed in one place each (the layout of
//! every reply is documented at the top of its `.lua` file).

use redis::{ErrorKind, FromRedisValue, RedisResult, Value};

use super::publish::Targets;

fn array(v: &Value) -> RedisResult<&[Value]> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        _ => Err((ErrorKind::TypeError, "script reply is not an array").into()),
    }
}

fn status(v: &[Value]) -> String {
    string(v, 0)
}

fn int(v: &[Value], i: usize) -> i64 {
    match v.get(i) {
        Some(Value::Int(n)) => *n,
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).parse().unwrap_or(0),
        _ => 0,
    }
}

fn string(v: &[Value], i: usize) -> String {
    match v.get(i) {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    }
}

/// An array of optional strings (nil stays `None`, position kept).
fn opt_strings(v: &[Value], i: usize) -> Vec<Option<String>> {
    match v.get(i) {
        Some(Value::Array(items)) | Some(Value::Set(items)) => items
            .iter()
            .map(|x| match x {
                Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn strings(v: &[Value], i: usize) -> Vec<String> {
    opt_strings(v, i).into_iter().flatten().collect()
}

/// The customer nodes at `i`, the watcher nodes at `j`.
fn targets(v: &[Value], i: usize, j: usize) -> Targets {
    Targets { customers: strings(v, i), watchers: strings(v, j) }
}

/// Why a script about one message did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No meta for the message (Redis may have lost it: restore and retry).
    NotFound,
    Deleted,
    /// The other side wrote it.
    Forbidden,
    Unexpected(String),
}

impl Refusal {
    fn from_status(st: String) -> Self {
        match st.as_str() {
            "NOTFOUND" => Refusal::NotFound,
            "DELETED" => Refusal::Deleted,
            "FORBIDDEN" => Refusal::Forbidden,
            _ => Refusal::Unexpected(st),
        }
    }
}

/// Replies of scripts about one existing message: [`MutateReply`], [`ReactReply`].
pub trait OnMessage {
    /// The script found no meta for the message.
    fn not_found(&self) -> bool;
}

/// A message numbered (or found again by its `client_id`).
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub seq: u64,
    pub ts: i64,
    /// Empty for a duplicate (nothing is relayed twice).
    pub targets: Targets,
    /// The customer's profile: username, avatar URL.
    pub username: Option<String>,
    pub avatar_url: Option<String>,
}

/// `send.lua`.
#[derive(Debug, Clone)]
pub enum SendReply {
    Ok(Sent),
    Duplicate(Sent),
    /// The customer's profile hash is missing.
    NoConversation,
    /// The conversation's counter is missing.
    NoSequence,
    Unexpected(String),
}

impl FromRedisValue for SendReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        let sent = || {
            let profile = opt_strings(v, 4);
            Sent {
                seq: int(v, 1) as u64,
                ts: int(v, 2),
                targets: targets(v, 3, 5),
                username: profile.first().cloned().flatten(),
                avatar_url: profile.get(1).cloned().flatten(),
            }
        };
        Ok(match status(v).as_str() {
            "OK" => SendReply::Ok(sent()),
            "DUP" => SendReply::Duplicate(sent()),
            "NOCONV" => SendReply::NoConversation,
            "NOSEQ" => SendReply::NoSequence,
            other => SendReply::Unexpected(other.to_string()),
        })
    }
}

/// `mutate.lua` (edit, delete).
#[derive(Debug, Clone)]
pub enum MutateReply {
    Ok { pos: u64, targets: Targets },
    Refused(Refusal),
}

impl FromRedisValue for MutateReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        Ok(match status(v).as_str() {
            "OK" => MutateReply::Ok { pos: int(v, 1) as u64, targets: targets(v, 2, 3) },
            _ => MutateReply::Refused(Refusal::from_status(status(v))),
        })
    }
}

impl OnMessage for MutateReply {
    fn not_found(&self) -> bool {
        matches!(self, MutateReply::Refused(Refusal::NotFound))
    }
}

/// `react.lua`.
#[derive(Debug, Clone)]
pub enum ReactReply {
    /// `reactions`: the message's counts as a JSON object.
    Ok { pos: u64, reactions: String, targets: Targets },
    /// Already in that state: nothing changed.
    Noop,
    Refused(Refusal),
}

impl FromRedisValue for ReactReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        Ok(match status(v).as_str() {
            "OK" => ReactReply::Ok { pos: int(v, 1) as u64, reactions: string(v, 2), targets: targets(v, 3, 4) },
            "NOOP" => ReactReply::Noop,
            _ => ReactReply::Refused(Refusal::from_status(status(v))),
        })
    }
}

impl OnMessage for ReactReply {
    fn not_found(&self) -> bool {
        matches!(self, ReactReply::Refused(Refusal::NotFound))
    }
}

/// `read.lua`.
#[derive(Debug, Clone)]
pub enum ReadReply {
    Ok { delivered: u64, seen: u64, changed: bool, targets: Targets },
    /// The receipt names a position past the conversation's last one.
    Ahead { current: i64 },
}

impl FromRedisValue for ReadReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        Ok(match status(v).as_str() {
            "AHEAD" => ReadReply::Ahead { current: int(v, 1) },
            _ => ReadReply::Ok { delivered: int(v, 1) as u64, seen: int(v, 2) as u64, changed: int(v, 3) == 1, targets: targets(v, 4, 5) },
        })
    }
}

/// `card_update.lua`.
#[derive(Debug, Clone)]
pub enum CardReply {
    Ok { pos: u64, targets: Targets },
    NoSequence,
    Unexpected(String),
}

impl FromRedisValue for CardReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        Ok(match status(v).as_str() {
            "OK" => CardReply::Ok { pos: int(v, 1) as u64, targets: targets(v, 2, 3) },
            "NOSEQ" => CardReply::NoSequence,
            other => CardReply::Unexpected(other.to_string()),
        })
    }
}

/// Scripts that answer `{n, ...}`: `unwatch.lua` (watchers left),
/// `node_beat.lua` (1, 0 or 2), `node_claim.lua` ({1, last beat} or {0}).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ints(pub i64, pub i64);

impl FromRedisValue for Ints {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        Ok(Ints(int(v, 0), int(v, 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn send_reply() {
        let v = Value::Array(vec![
            bulk("OK"),
            Value::Int(7),
            Value::Int(1000),
            Value::Array(vec![bulk("g1")]),
            Value::Array(vec![bulk("ann"), Value::Nil]),
            Value::Array(vec![bulk("g2")]),
        ]);
        match SendReply::from_redis_value(&v).unwrap() {
            SendReply::Ok(s) => {
                assert_eq!((s.seq, s.ts), (7, 1000));
                assert_eq!(s.targets.customers, ["g1"]);
                assert_eq!(s.targets.watchers, ["g2"]);
                assert_eq!((s.username.as_deref(), s.avatar_url), (Some("ann"), None));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(SendReply::from_redis_value(&Value::Array(vec![bulk("NOSEQ")])).unwrap(), SendReply::NoSequence));
    }

    #[test]
    fn refusals_and_reads() {
        let r = MutateReply::from_redis_value(&Value::Array(vec![bulk("FORBIDDEN"), bulk("staff")])).unwrap();
        assert!(matches!(r, MutateReply::Refused(Refusal::Forbidden)));
        assert!(ReactReply::from_redis_value(&Value::Array(vec![bulk("NOTFOUND")])).unwrap().not_found());
        let r = ReadReply::from_redis_value(&Value::Array(vec![bulk("AHEAD"), Value::Int(3)])).unwrap();
        assert!(matches!(r, ReadReply::Ahead { current: 3 }));
        assert_eq!(Ints::from_redis_value(&Value::Array(vec![Value::Int(1), bulk("1700")])).unwrap(), Ints(1, 1700));
    }
}

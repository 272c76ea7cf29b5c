//! The scripts' replies as types, parsed in one place each (the layout of
//! every reply is documented at the top of its `.lua` file).

use redis::{ErrorKind, FromRedisValue, RedisResult, Value};

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

/// Why a script about one message did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No meta for the message (Redis may have lost it: restore and retry).
    NotFound,
    /// No state for the conversation (lost, or expired while idle: seed and retry).
    NoState,
    Deleted,
    /// The other side wrote it.
    Forbidden,
    Unexpected(String),
}

impl Refusal {
    fn from_status(st: String) -> Self {
        match st.as_str() {
            "NOTFOUND" => Refusal::NotFound,
            "NOSTATE" => Refusal::NoState,
            "DELETED" => Refusal::Deleted,
            "FORBIDDEN" => Refusal::Forbidden,
            _ => Refusal::Unexpected(st),
        }
    }
}

/// Replies of scripts about one existing message: [`MutateReply`], [`ReactReply`].
pub trait OnMessage {
    /// Why the script did nothing, if it did nothing.
    fn refusal(&self) -> Option<&Refusal>;
}

/// A message numbered (or found again by its `client_id`).
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub seq: u64,
    pub ts: i64,
    /// The customer's profile as the conversation's state holds it (empty: unknown).
    pub username: String,
    pub avatar_url: String,
}

/// `send.lua`.
#[derive(Debug, Clone)]
pub enum SendReply {
    Ok(Sent),
    Duplicate(Sent),
    /// The conversation's state is missing (lost, or expired while idle).
    NoState,
    Unexpected(String),
}

impl FromRedisValue for SendReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        let sent = || Sent { seq: int(v, 1) as u64, ts: int(v, 2), username: string(v, 3), avatar_url: string(v, 4) };
        Ok(match status(v).as_str() {
            "OK" => SendReply::Ok(sent()),
            "DUP" => SendReply::Duplicate(sent()),
            "NOSTATE" => SendReply::NoState,
            other => SendReply::Unexpected(other.to_string()),
        })
    }
}

/// `mutate.lua` (edit, delete).
#[derive(Debug, Clone)]
pub enum MutateReply {
    Ok { pos: u64 },
    Refused(Refusal),
}

impl FromRedisValue for MutateReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        Ok(match status(v).as_str() {
            "OK" => MutateReply::Ok { pos: int(v, 1) as u64 },
            _ => MutateReply::Refused(Refusal::from_status(status(v))),
        })
    }
}

impl OnMessage for MutateReply {
    fn refusal(&self) -> Option<&Refusal> {
        match self {
            MutateReply::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// `react.lua`.
#[derive(Debug, Clone)]
pub enum ReactReply {
    /// `reactions`: the message's counts as a JSON object.
    Ok { pos: u64, reactions: String },
    /// Already in that state: nothing changed.
    Noop,
    Refused(Refusal),
}

impl FromRedisValue for ReactReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        Ok(match status(v).as_str() {
            "OK" => ReactReply::Ok { pos: int(v, 1) as u64, reactions: string(v, 2) },
            "NOOP" => ReactReply::Noop,
            _ => ReactReply::Refused(Refusal::from_status(status(v))),
        })
    }
}

impl OnMessage for ReactReply {
    fn refusal(&self) -> Option<&Refusal> {
        match self {
            ReactReply::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// `read.lua`.
#[derive(Debug, Clone)]
pub enum ReadReply {
    Ok { delivered: u64, seen: u64, changed: bool },
    /// The receipt names a position past the conversation's last one (0: no state).
    Ahead { current: i64 },
}

impl FromRedisValue for ReadReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        Ok(match status(v).as_str() {
            "AHEAD" => ReadReply::Ahead { current: int(v, 1) },
            _ => ReadReply::Ok { delivered: int(v, 1) as u64, seen: int(v, 2) as u64, changed: int(v, 3) == 1 },
        })
    }
}

/// `card_update.lua`.
#[derive(Debug, Clone)]
pub enum CardReply {
    Ok { pos: u64 },
    NoState,
    Unexpected(String),
}

impl FromRedisValue for CardReply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let v = array(v)?;
        Ok(match status(v).as_str() {
            "OK" => CardReply::Ok { pos: int(v, 1) as u64 },
            "NOSTATE" => CardReply::NoState,
            other => CardReply::Unexpected(other.to_string()),
        })
    }
}

/// Scripts that answer `{n, ...}`: `node_beat.lua` (1, 0 or 2),
/// `node_claim.lua` ({1, last beat} or {0}).
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
        let v = Value::Array(vec![bulk("OK"), Value::Int(7), Value::Int(1000), bulk("ann"), bulk("")]);
        match SendReply::from_redis_value(&v).unwrap() {
            SendReply::Ok(s) => {
                assert_eq!((s.seq, s.ts), (7, 1000));
                assert_eq!((s.username.as_str(), s.avatar_url.as_str()), ("ann", ""));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(SendReply::from_redis_value(&Value::Array(vec![bulk("NOSTATE")])).unwrap(), SendReply::NoState));
    }

    #[test]
    fn refusals_and_reads() {
        let r = MutateReply::from_redis_value(&Value::Array(vec![bulk("FORBIDDEN"), bulk("staff")])).unwrap();
        assert!(matches!(r, MutateReply::Refused(Refusal::Forbidden)));
        let r = ReactReply::from_redis_value(&Value::Array(vec![bulk("NOTFOUND")])).unwrap();
        assert_eq!(r.refusal(), Some(&Refusal::NotFound));
        let r = MutateReply::from_redis_value(&Value::Array(vec![bulk("NOSTATE")])).unwrap();
        assert_eq!(r.refusal(), Some(&Refusal::NoState));
        let r = ReadReply::from_redis_value(&Value::Array(vec![bulk("AHEAD"), Value::Int(3)])).unwrap();
        assert!(matches!(r, ReadReply::Ahead { current: 3 }));
        assert_eq!(Ints::from_redis_value(&Value::Array(vec![Value::Int(1), bulk("1700")])).unwrap(), Ints(1, 1700));
    }
}

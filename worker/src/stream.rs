//! The log shards as a consumer-group member sees them: group creation,
//! `XREADGROUP` (new and own pending entries), `XAUTOCLAIM`, and the replies
//! parsed by hand from [`redis::Value`] so that an odd entry (a deleted one
//! comes back with no fields) is an entry without payload, not a parse error
//! that would stall the whole read.

use redis::aio::ConnectionLike;
use redis::{ErrorKind, Value};
use schema::keys::{FIELD, WORKER_GROUP};

use crate::WorkerError;

/// One stream entry: where it lives and its envelope bytes, if it still has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub stream: String,
    pub id: String,
    /// The `e` field (empty when the entry lacks it); `None` when the entry
    /// was deleted after delivery.
    pub payload: Option<Vec<u8>>,
    /// Fields the gateway's send script adds to a message it logs itself
    /// (its envelope goes in before the number exists): `s` (seq), `u`/`a`
    /// (the customer's username and avatar).
    pub numbered: Option<Numbered>,
}

/// What the send script adds to a message's log entry; see [`Entry::numbered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    pub seq: u64,
    pub username: String,
    pub avatar: String,
}

impl Numbered {
    /// Completes a message logged by the send script.
    pub fn apply(&self, ev: &mut schema::envelope::LogEvent) {
        if let schema::envelope::LogEvent::Message { seq, customer, .. } = ev {
            *seq = self.seq;
            if !self.username.is_empty() {
                customer.username = self.username.clone();
            } else if customer.username.is_empty() {
                customer.username = customer.id.clone();
            }
            customer.avatar_url = Some(self.avatar.clone()).filter(|a| !a.is_empty());
        }
    }
}

/// Creates the worker group on every shard (and the stream itself), once.
pub async fn ensure_groups(conn: &mut (impl ConnectionLike + Send), streams: &[String]) -> Result<(), WorkerError> {
    for s in streams {
        let r: redis::RedisResult<()> =
            redis::cmd("XGROUP").arg("CREATE").arg(s).arg(WORKER_GROUP).arg("0").arg("MKSTREAM").query_async(conn).await;
        match r {
            Ok(()) => tracing::info!(stream = %s, "created consumer group"),
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `XREADGROUP` over all shards. `pending` re-reads this consumer's own
/// delivered-but-unacked entries (id `0`, returns at once); otherwise reads
/// new entries (`>`), blocking up to `block_ms`.
pub async fn read_group(
    conn: &mut (impl ConnectionLike + Send),
    streams: &[String],
    consumer: &str,
    count: usize,
    block_ms: u64,
    pending: bool,
) -> Result<Vec<Entry>, WorkerError> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(WORKER_GROUP).arg(consumer).arg("COUNT").arg(count);
    if !pending {
        cmd.arg("BLOCK").arg(block_ms);
    }
    cmd.arg("STREAMS").arg(streams);
    for _ in streams {
        cmd.arg(if pending { "0" } else { ">" });
    }
    let reply: Value = match cmd.query_async(conn).await {
        Ok(v) => v,
        // The group vanished (Redis lost its state, or FLUSHALL): recreate it
        // and report an empty read; the next one proceeds normally.
        Err(e) if e.code() == Some("NOGROUP") => {
            tracing::warn!("consumer group missing, recreating");
            ensure_groups(conn, streams).await?;
            return Ok(Vec::new());
        }
        Err(e) => return Err(e.into()),
    };
    parse_read_reply(&reply)
}

/// One `XAUTOCLAIM` call: entries of `stream` idle for `min_idle_ms`, from
/// `cursor`. Returns the entries and the next cursor (`0-0` when done).
pub async fn autoclaim(
    conn: &mut (impl ConnectionLike + Send),
    stream: &str,
    consumer: &str,
    min_idle_ms: u64,
    cursor: &str,
    count: usize,
) -> Result<(Vec<Entry>, String), WorkerError> {
    let reply: Value = redis::cmd("XAUTOCLAIM")
        .arg(stream)
        .arg(WORKER_GROUP)
        .arg(consumer)
        .arg(min_idle_ms)
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    // [next-cursor, [[id, fields]...], [deleted ids]] (Redis 7 drops deleted
    // entries from the pending list itself and lists them third).
    let items = as_seq(&reply).ok_or_else(|| unexpected("XAUTOCLAIM reply"))?;
    let next = items.first().and_then(as_string).ok_or_else(|| unexpected("XAUTOCLAIM cursor"))?;
    let mut out = Vec::new();
    if let Some(entries) = items.get(1).and_then(as_seq) {
        for e in entries {
            if let Some(entry) = parse_entry(stream, e) {
                out.push(entry);
            }
        }
    }
    Ok((out, next))
}

/// Number of entries pending (delivered, not acked) in the group on `stream`.
pub async fn pending_count(conn: &mut (impl ConnectionLike + Send), stream: &str) -> Result<u64, WorkerError> {
    let reply: Value = redis::cmd("XPENDING").arg(stream).arg(WORKER_GROUP).query_async(conn).await?;
    Ok(as_seq(&reply).and_then(|s| s.first()).and_then(as_int).map(|n| n.max(0) as u64).unwrap_or(0))
}

fn unexpected(what: &str) -> WorkerError {
    WorkerError::Redis(redis::RedisError::from((ErrorKind::TypeError, "unexpected reply shape", what.to_string())))
}

fn as_seq(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => as_string(other).and_then(|s| s.parse().ok()),
    }
}

/// `[id, [field, value, ...] | nil]` -> Entry.
fn parse_entry(stream: &str, v: &Value) -> Option<Entry> {
    let parts = as_seq(v)?;
    let id = as_string(parts.first()?)?;
    let pairs: Vec<(&Value, &Value)> = match parts.get(1) {
        Some(Value::Array(fields)) => fields.chunks(2).filter_map(|c| Some((c.first()?, c.get(1)?))).collect(),
        Some(Value::Map(map)) => map.iter().map(|(k, v)| (k, v)).collect(),
        // Nil fields: the entry was deleted after it was delivered.
        _ => return Some(Entry { stream: stream.to_string(), id, payload: None, numbered: None }),
    };
    // An entry without our field is malformed: an empty payload, which fails
    // to decode and is dropped as poison.
    let mut payload = Some(Vec::new());
    let (mut seq, mut username, mut avatar) = (None, String::new(), String::new());
    for (k, v) in pairs {
        match as_string(k).as_deref() {
            Some(f) if f == FIELD => {
                if let Value::BulkString(b) = v {
                    payload = Some(b.clone());
                }
            }
            Some("s") => seq = as_int(v).and_then(|n| u64::try_from(n).ok()),
            Some("u") => username = as_string(v).unwrap_or_default(),
            Some("a") => avatar = as_string(v).unwrap_or_default(),
            _ => {}
        }
    }
    let numbered = seq.map(|seq| Numbered { seq, username, avatar });
    Some(Entry { stream: stream.to_string(), id, payload, numbered })
}

/// `XREADGROUP` reply: nil, or per stream `[name, [entry...]]` (RESP2 array
/// or RESP3 map).
pub fn parse_read_reply(v: &Value) -> Result<Vec<Entry>, WorkerError> {
    let per_stream: Vec<(&Value, &Value)> = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .filter_map(|s| {
                let p = as_seq(s)?;
                Some((p.first()?, p.get(1)?))
            })
            .collect(),
        Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
        _ => return Err(unexpected("XREADGROUP reply")),
    };
    let mut out = Vec::new();
    for (name, entries) in per_stream {
        let name = as_string(name).ok_or_else(|| unexpected("stream name"))?;
        for e in as_seq(entries).unwrap_or(&[]) {
            if let Some(entry) = parse_entry(&name, e) {
                out.push(entry);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_entries_including_deleted_ones() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("p:log:0"),
            Value::Array(vec![
                Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("e"), Value::BulkString(vec![1, 2])])]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
                Value::Array(vec![bulk("3-0"), Value::Array(vec![bulk("other"), bulk("x")])]),
            ]),
        ])]);
        let got = parse_read_reply(&reply).expect("parse");
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], Entry { stream: "p:log:0".into(), id: "1-0".into(), payload: Some(vec![1, 2]), numbered: None });
        assert_eq!(got[1].payload, None);
        assert_eq!(got[2].payload, Some(Vec::new()));
        assert!(parse_read_reply(&Value::Nil).expect("nil").is_empty());
    }
}

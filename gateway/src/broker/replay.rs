//! Reads of a conversation's replay stream (entry id `<pos>-0`), and the
//! epoch: a random id kept in Redis, a new one meaning Redis lost its state.

use redis::streams::StreamRangeReply;
use redis::{AsyncCommands, Value};
use redis_conn::RedisConn;
use schema::keys::{self, Keys};

use crate::error::GatewayError;

/// Replay entries of a conversation with positions in `from..=to` (at most
/// `limit`), their frames filled from their positions.
pub async fn range(conn: &mut RedisConn, key: &str, from: u64, to: Option<u64>, limit: usize) -> Result<Vec<(u64, String)>, redis::RedisError> {
    let end = to.map(keys::replay_id).unwrap_or_else(|| "+".to_string());
    let reply: StreamRangeReply = conn.xrange_count(key, keys::replay_id(from), end, limit).await?;
    Ok(reply
        .ids
        .into_iter()
        .filter_map(|e| {
            let pos = e.id.split('-').next()?.parse().ok()?;
            let frame = match e.map.get("f")? {
                Value::BulkString(b) => std::str::from_utf8(b).ok()?,
                _ => return None,
            };
            Some((pos, super::template::subst_position(frame, pos)))
        })
        .collect())
}

/// The newest entry of a replay stream: its position and frame (filled in).
pub async fn last(conn: &mut RedisConn, key: &str) -> Result<Option<(u64, String)>, redis::RedisError> {
    let reply: StreamRangeReply = conn.xrevrange_count(key, "+", "-", 1).await?;
    Ok(reply.ids.first().and_then(|e| {
        let pos = e.id.split('-').next()?.parse().ok()?;
        let frame = match e.map.get("f")? {
            Value::BulkString(b) => std::str::from_utf8(b).ok()?,
            _ => return None,
        };
        Some((pos, super::template::subst_position(frame, pos)))
    }))
}

/// The current epoch (created on first use).
pub async fn current_epoch(conn: &mut RedisConn, keys: &Keys) -> Result<String, GatewayError> {
    let key = keys.epoch();
    let e: Option<String> = conn.get(&key).await?;
    if let Some(e) = e {
        return Ok(e);
    }
    let fresh = crate::ids::random_token()[..16].to_string();
    let _: Option<String> = redis::cmd("SET").arg(&key).arg(&fresh).arg("NX").query_async(conn).await?;
    let e: Option<String> = conn.get(&key).await?;
    Ok(e.unwrap_or(fresh))
}

//! Revoked agent sessions: the control channel on which a node announces a
//! revoked session (logout) by the hash of
//! its token. Every node subscribes
//! (`node/revoke.rs`) and closes the sockets opened with that session
//! ([`super::close::REVOKED`]).

use redis_conn::RedisConn;

/// The control channel (one per deployment, under the key prefix).
pub fn channel(prefix: &str) -> String {
    format!("{prefix}ctl:revoke")
}

/// Tells every node that the session with this token hash is revoked.
/// Best effort: a node that misses it (its subscriber reconnecting) finds
/// the session gone at its next sweep.
pub async fn announce(conn: &mut RedisConn, prefix: &str, token_hash: &str) {
    let r: Result<i64, _> = redis::cmd("PUBLISH").arg(channel(prefix)).arg(token_hash).query_async(conn).await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "revocation announce failed; nodes will find it at their sweep");
    }
}

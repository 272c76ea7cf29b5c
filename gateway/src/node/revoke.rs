//! Revoked sessions close their sockets on every node: each node subscribes
//! to the revocation channel (`hub/revoke.rs`) on a small connection of its
//! own and closes the agent sockets opened with a revoked session (4001
//! "session revoked"). Pub/sub delivers at most once, and a session also
//! ends by expiring without anyone announcing it; so on every (re)subscribe
//! and every [`SWEEP`] the node also checks that the sessions of its agent
//! sockets still exist (one pipelined `EXISTS` per distinct session) and
//! closes those whose session is gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::hub::close;
use crate::state::AppState;

/// How often the node checks that its agent sockets' sessions still exist.
pub const SWEEP: Duration = Duration::from_secs(30);

/// Closes this node's agent sockets opened with any of these sessions.
pub fn close_sessions(state: &AppState, revoked: &HashSet<&str>) -> usize {
    let mut n = 0;
    state.registry.for_agents(|h| {
        if h.session.as_deref().is_some_and(|s| revoked.contains(s)) {
            h.close(close::REVOKED);
            n += 1;
        }
    });
    n
}

/// Closes the agent sockets whose session no longer exists in Redis.
async fn sweep(state: &AppState) {
    let mut sessions: Vec<Arc<str>> = Vec::new();
    state.registry.for_agents(|h| sessions.extend(h.session.clone()));
    sessions.sort();
    sessions.dedup();
    if sessions.is_empty() {
        return;
    }
    let mut conn = state.redis();
    for chunk in sessions.chunks(500) {
        let mut pipe = redis::pipe();
        for s in chunk {
            pipe.exists(state.keys.session(s));
        }
        let Ok(found): Result<Vec<bool>, _> = pipe.query_async(&mut conn).await else { return };
        let gone: HashSet<&str> = chunk.iter().zip(found).filter(|(_, f)| !f).map(|(s, _)| &**s).collect();
        if !gone.is_empty() {
            let n = close_sessions(state, &gone);
            tracing::info!(sockets = n, "closed sockets of expired or revoked sessions");
        }
    }
}

/// Runs until shutdown: reads the revocation channel, reconnecting as needed.
pub async fn run(state: AppState) {
    let mut shutdown = state.shutdown.clone();
    let channel = crate::hub::revoke::channel(state.keys.prefix());
    loop {
        if *shutdown.borrow() {
            return;
        }
        let connected = async {
            let mut ps = state.redis_target.pubsub_client()?.get_async_pubsub().await?;
            ps.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        let ps = match tokio::time::timeout(Duration::from_secs(3), connected).await {
            Ok(Ok(ps)) => ps,
            _ => {
                tracing::warn!("revocations: cannot subscribe, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        // Whatever was announced while not subscribed.
        sweep(&state).await;
        let mut stream = ps.into_on_message();
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP, SWEEP);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { break };
                    let hash = String::from_utf8_lossy(msg.get_payload_bytes()).into_owned();
                    let n = close_sessions(&state, &HashSet::from([hash.as_str()]));
                    if n > 0 {
                        tracing::info!(sockets = n, "closed sockets of a revoked session");
                    }
                }
                _ = every.tick() => sweep(&state).await,
                _ = shutdown.changed() => return,
            }
        }
        tracing::warn!("revocations: connection lost, reconnecting");
    }
}

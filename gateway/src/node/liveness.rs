//! Node liveness: heartbeats, and cleaning up after a gateway that stopped
//! without closing its sockets (`kill -9`, a crashed host, a long stall).
//!
//! Every gateway beats into `{nodes}` (ZSET node -> last beat, Redis time in
//! ms) and indexes where it is referenced: `node:<id>:customers` (the
//! conversations whose `{c:<id>}:nodes` lists it: its customers' presence).
//! Routing needs no clean-up: a dead node's channel subscriptions end with
//! its connection. A node whose last beat is older than `node_ttl_ms` is
//! claimed by the first healthy gateway to see it (a lock, then it leaves
//! `{nodes}` and gets a `reaped` marker) and cleaned up: it leaves every
//! conversation's node set, a customer left with no node goes offline
//! (`presence` to every agent, `last_seen` = the dead node's last beat), and
//! its index is deleted.
//!
//! A node declared dead while alive (stalled longer than the TTL) learns it at
//! its next beat (the marker): it refuses new sockets, closes its own with
//! 1001 "going away" (clients resume, on any node), cleans up after itself
//! under the same lock, and rejoins. Its sockets may have missed events in
//! between, which their resume replays. A node started with the id of a dead
//! one (`CHAT_NODE_ID`) cleans up its previous life before it beats.
//!
//! A gateway reaps others only after it has itself beaten without a failure
//! for a whole TTL, so a Redis outage (every beat stale) does not make the
//! nodes reap each other when Redis returns.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis_conn::Call;

use crate::hub::close;
use crate::error::GatewayError;
use crate::broker::replies::Ints;
use crate::state::AppState;

/// Conversations per pipelined round trip while cleaning up.
const CHUNK: usize = 500;
/// How long a `reaped` marker lasts: the longest stall a node can come back
/// from and still learn it was declared dead.
const REAPED_MARKER_SECS: u64 = 24 * 3600;

fn lock_ms(state: &AppState) -> u64 {
    (state.cfg.node_ttl_ms * 4).max(10_000)
}

/// Joins the cluster of gateways: cleans up whatever an earlier process with
/// this node id left (a no-op for a fresh random id), then beats. Retries
/// until Redis answers.
pub async fn join(state: &AppState) {
    loop {
        match clean_self_and_rejoin(state).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "joining the node registry failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Joins (sockets are refused until then: `fenced` starts true), then beats
/// every `node_beat_ms` and reaps nodes that stopped, until shutdown.
pub async fn run(state: AppState) {
    // Started here, with the node's other background duty, so that the
    // server's start-up list stays as it is.
    tokio::spawn(super::revoke::run(state.clone()));
    join(&state).await;
    state.fenced.store(false, Ordering::SeqCst);
    let every = Duration::from_millis(state.cfg.node_beat_ms.max(50));
    let ttl = Duration::from_millis(state.cfg.node_ttl_ms);
    let mut healthy_since: Option<Instant> = Some(Instant::now());
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if *state.shutdown.borrow() {
            return;
        }
        let call = Call::new().key(state.keys.nodes()).key(state.keys.node_reaped(&state.node)).arg(&state.node);
        let beat = state.broker().run::<Ints>(&state.scripts.node_beat, &call).await;
        match beat.map(|Ints(n, _)| n) {
            Ok(0) => {
                tracing::warn!(node = %state.node, "this node was declared dead (stalled past the TTL): closing its sockets and rejoining");
                fence(&state).await;
                healthy_since = Some(Instant::now());
                continue;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                healthy_since = None;
                continue;
            }
        }
        let since = *healthy_since.get_or_insert_with(Instant::now);
        if since.elapsed() < ttl {
            continue;
        }
        if let Err(e) = reap_stale(&state).await {
            tracing::warn!(error = %e, "reaping stopped nodes failed");
        }
    }
}

/// A clean exit (every socket closed): the node leaves the registry and
/// deletes its index, so nobody has to reap it. With sockets
/// still open (the grace ran out) it stays, and the others clean up after
/// the TTL.
pub async fn leave(state: &AppState) {
    if state.registry.total() > 0 {
        return;
    }
    let mut pipe = redis::pipe();
    pipe.zrem(state.keys.nodes(), &state.node).ignore();
    drop_node_keys(&mut pipe, state, &state.node);
    let mut conn = state.redis();
    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
        tracing::warn!(error = %e, "leaving the node registry failed (the others will clean up)");
    }
}

/// Claims and cleans up every node whose beat is older than the TTL.
async fn reap_stale(state: &AppState) -> Result<(), GatewayError> {
    let mut conn = state.redis();
    let all: Vec<(String, f64)> = conn.zrange_withscores(state.keys.nodes(), 0, -1).await?;
    let newest = all.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    for (node, beat) in all {
        // A cheap pre-filter on the scores alone; the claim decides on Redis time.
        if node == state.node || newest - beat < state.cfg.node_ttl_ms as f64 {
            continue;
        }
        let claim = Call::new()
            .key(state.keys.nodes())
            .key(state.keys.node_reap_lock(&node))
            .key(state.keys.node_reaped(&node))
            .arg(&node)
            .arg(state.cfg.node_ttl_ms)
            .arg(&state.node)
            .arg(lock_ms(state))
            .arg(REAPED_MARKER_SECS);
        let Ints(claimed, last_beat) = state.broker().run(&state.scripts.node_claim, &claim).await?;
        if claimed != 1 {
            continue;
        }
        tracing::warn!(%node, last_beat, "node stopped beating: cleaning up after it");
        let res = clean_up(state, &node, last_beat).await;
        unlock(state, &node).await;
        res?;
        metrics::counter!(crate::metrics::NODES_REAPED).increment(1);
    }
    Ok(())
}

async fn unlock(state: &AppState, node: &str) {
    let call = Call::new().key(state.keys.node_reap_lock(node)).arg(&state.node);
    if let Err(e) = state.broker().run::<Ints>(&state.scripts.node_unlock, &call).await {
        tracing::warn!(error = %e, "releasing the reap lock failed (it expires)");
    }
}

/// This node was declared dead: refuse new sockets, close ours (1001),
/// clean up after ourselves and rejoin.
async fn fence(state: &AppState) {
    state.fenced.store(true, Ordering::SeqCst);
    let close_all = || state.registry.all().iter().for_each(|h| h.close(close::GOING_AWAY));
    close_all();
    let deadline = Instant::now() + Duration::from_secs(state.cfg.shutdown_grace_secs.max(1));
    while state.registry.total() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A socket upgraded just as the fence went up.
    close_all();
    join(state).await;
    state.fenced.store(false, Ordering::SeqCst);
}

/// Under the node's lock (waiting for a reaper that holds it): clean up
/// every reference to this node, then rejoin.
async fn clean_self_and_rejoin(state: &AppState) -> Result<(), GatewayError> {
    let lock = state.keys.node_reap_lock(&state.node);
    let mut conn = state.redis();
    loop {
        let got: Option<String> = redis::cmd("SET").arg(&lock).arg(&state.node).arg("NX").arg("PX").arg(lock_ms(state)).query_async(&mut conn).await?;
        // Ours already when an earlier attempt failed halfway.
        let owner: Option<String> = if got.is_some() { None } else { conn.get(&lock).await? };
        if got.is_some() || owner.as_deref() == Some(state.node.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = clean_up(state, &state.node, schema::now_ms()).await;
    if res.is_err() {
        unlock(state, &state.node).await;
        return res;
    }
    let call = Call::new().key(state.keys.nodes()).key(lock).key(state.keys.node_reaped(&state.node)).arg(&state.node).arg(&state.node);
    state.broker().run::<Ints>(&state.scripts.node_rejoin, &call).await?;
    Ok(())
}

/// Removes `node` from every conversation that lists it; customers left
/// with no node go offline as of `last_seen`. Idempotent.
async fn clean_up(state: &AppState, node: &str, last_seen: i64) -> Result<(), GatewayError> {
    let k = &state.keys;
    let mut conn = state.redis();
    let customers: Vec<String> = conn.smembers(k.node_customers(node)).await?;
    let mut offline = Vec::new();
    for chunk in customers.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        for c in chunk {
            pipe.srem(k.customer_nodes(c), node).scard(k.customer_nodes(c));
        }
        let out: Vec<i64> = pipe.query_async(&mut conn).await?;
        // (When a node cleans up after itself it holds no socket: it is
        // fenced, so nothing it removes here is in use.)
        for (c, pair) in chunk.iter().zip(out.chunks(2)) {
            if pair[0] == 1 && pair[1] == 0 {
                offline.push(c.clone());
            }
        }
    }
    let mut pipe = redis::pipe();
    drop_node_keys(&mut pipe, state, node);
    pipe.query_async::<()>(&mut conn).await?;
    // Announced last: an agent who sees a customer go offline finds no
    // trace of the dead node left in Redis.
    for c in &offline {
        super::presence::customer_offline(state, c, last_seen).await?;
    }
    if !customers.is_empty() {
        tracing::info!(%node, customers = customers.len(), offline = offline.len(), "node references cleaned up");
    }
    Ok(())
}

/// Deletes a node's own keys: its index.
fn drop_node_keys(pipe: &mut redis::Pipeline, state: &AppState, node: &str) {
    let k = &state.keys;
    pipe.del(k.node_customers(node)).ignore();
}

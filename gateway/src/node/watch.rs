//! Watching: which agent sockets on this node receive a conversation's
//! live events. The hub routes them locally; Redis counts the node in
//! `{c:<id>}:watchers` (node -> sockets) so the scripts that number an event
//! return it as a target, and in the node's own index (for the clean-up
//! after a crash).

use std::sync::Arc;

use redis::AsyncCommands;
use redis_conn::Call;

use crate::broker::replies::Ints;
use crate::error::GatewayError;
use crate::hub::{ConnHandle, Out};
use crate::state::AppState;

/// Starts watching conversations for an agent socket: the writer holds
/// their live events from here, the node routes them to the socket, and
/// Redis counts the node as a watcher, so every event numbered after this
/// reaches the node's inbox; the caller then asks the writer to replay what
/// came before (`Out::Resume`), which releases the held events in order.
pub async fn watch_all(state: &AppState, h: &ConnHandle, convs: &[String]) -> Result<(), GatewayError> {
    if convs.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for c in convs {
        h.push(Out::Watch(Arc::from(c.as_str())));
        state.registry.watch(c, h);
        pipe.cmd("HINCRBY").arg(state.keys.watchers(c)).arg(&state.node).arg(1).ignore();
        pipe.sadd(state.keys.node_watched(&state.node), c).ignore();
    }
    let mut conn = state.redis();
    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
        // Undone here only: decrementing counts that may not have landed
        // could take another socket's watch away. A count that did land
        // stays one too high, which costs frames nobody on the node reads,
        // never a missed one.
        convs.iter().for_each(|c| stop_locally(state, h, c));
        return Err(e.into());
    }
    Ok(())
}

/// The node stops routing a conversation's events to the socket, whose
/// writer forgets it.
fn stop_locally(state: &AppState, h: &ConnHandle, conv: &str) {
    state.registry.unwatch(conv, h.id);
    h.push(Out::Unwatch(Arc::from(conv)));
}

/// Stops watching conversations (an `unwatch`, or the socket closing).
pub async fn unwatch_all<'a>(state: &AppState, h: &ConnHandle, convs: impl Iterator<Item = &'a str>) -> Result<(), GatewayError> {
    let mut calls = Vec::new();
    for c in convs {
        stop_locally(state, h, c);
        calls.push((c, Call::new().key(state.keys.watchers(c)).arg(&state.node)));
    }
    let mut gone = Vec::new();
    for (c, call) in calls {
        let Ints(n, _) = state.broker().run(&state.scripts.unwatch, &call).await?;
        if n <= 0 {
            gone.push(c);
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    // The node's index (for the clean-up after a crash) drops the
    // conversations no socket here watches any more; one watched again
    // meanwhile is put back (as in `unregister` for customers).
    let mut conn = state.redis();
    let node_watched = state.keys.node_watched(&state.node);
    let _: () = conn.srem(&node_watched, &gone).await?;
    let again: Vec<&str> = gone.iter().copied().filter(|c| state.registry.is_watched(c)).collect();
    if !again.is_empty() {
        let _: () = conn.sadd(&node_watched, &again).await?;
    }
    Ok(())
}


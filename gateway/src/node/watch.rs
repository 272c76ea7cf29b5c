//! Watching: which agent sockets on this node receive a conversation's
//! live events. The hub routes them locally; the node is subscribed to the
//! conversation's channel while any of its sockets holds it ([`super::subs`]).

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::GatewayError;
use crate::hub::{ConnHandle, Out};
use crate::state::AppState;

/// Starts watching conversations for an agent socket: the writer holds
/// their live events from here, the node routes them to the socket and is
/// subscribed to their channels, so every event numbered after this reaches
/// the node; the caller then asks the writer to replay what came before
/// (`Out::Resume`), which releases the held events in order. The
/// conversations whose watch succeeded are added to `watched`.
pub async fn watch_all(state: &AppState, h: &ConnHandle, convs: &[String], watched: &mut HashSet<String>) -> Result<(), GatewayError> {
    for c in convs {
        h.push(Out::Watch(Arc::from(c.as_str())));
        state.registry.watch(c, h);
    }
    let subscribed = futures::future::join_all(convs.iter().map(|c| async move {
        let ch = state.keys.channel(c);
        (c, state.subs.acquire(&ch).await)
    }))
    .await;
    let mut failed = None;
    for (c, r) in subscribed {
        match r {
            Ok(()) => {
                watched.insert(c.clone());
            }
            Err(e) => {
                stop_locally(state, h, c);
                failed = Some(e);
            }
        }
    }
    failed.map_or(Ok(()), Err)
}

/// The node stops routing a conversation's events to the socket, whose
/// writer forgets it.
fn stop_locally(state: &AppState, h: &ConnHandle, conv: &str) {
    state.registry.unwatch(conv, h.id);
    h.push(Out::Unwatch(Arc::from(conv)));
}

/// Stops watching conversations (an `unwatch`, or the socket closing).
pub fn unwatch_all<'a>(state: &AppState, h: &ConnHandle, convs: impl Iterator<Item = &'a str>) {
    for c in convs {
        stop_locally(state, h, c);
        state.subs.release(&state.keys.channel(c));
    }
}

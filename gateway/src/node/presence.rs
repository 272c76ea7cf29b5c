//! Presence: a node lists itself in `{c:<id>}:nodes` while it holds a
//! socket of the customer (and in its own index, for the clean-up after a
//! crash); the first node makes the customer online, the last one leaving
//! makes them offline (`presence` to every agent through the staff stream).
//! A customer's node is also subscribed to the conversation's channel.

use std::collections::HashSet;

use redis::AsyncCommands;
use schema::frames::{ServerFrame, UserKind};

use super::watch::unwatch_all;
use crate::error::GatewayError;
use crate::hub::ConnHandle;
use crate::identity::Identity;
use crate::state::AppState;

/// A new socket: into the hub, and for a customer onto its conversation's
/// channel and into Redis's presence. Returns whether the channel was
/// counted for the socket ([`unregister`] releases it then).
pub async fn register(state: &AppState, ident: &Identity, h: &ConnHandle) -> bool {
    match ident.kind {
        // Agents get the staff stream, which every node reads, and the
        // channels of the conversations they watch.
        UserKind::Agent => {
            state.registry.add_agent(h.clone());
            false
        }
        UserKind::Customer => {
            let conv = ident.id.as_str();
            state.registry.add_customer(conv, h.clone());
            // Subscribed before `hello`: every event numbered from here on
            // reaches this node; what came before is history or `resume`.
            let subscribed = match state.subs.acquire(&state.keys.channel(conv)).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "subscribe failed");
                    false
                }
            };
            if let Err(e) = add_customer_node(state, conv).await {
                tracing::warn!(error = %e, "register failed");
            }
            subscribed
        }
    }
}

/// Lists this node in the conversation's customer nodes (and the node's own
/// index, for the clean-up after a crash); the first node makes the
/// customer online.
async fn add_customer_node(state: &AppState, conv: &str) -> Result<(), GatewayError> {
    let mut conn = state.redis();
    let (added, count): (i64, i64) = redis::pipe()
        .sadd(state.keys.customer_nodes(conv), &state.node)
        .scard(state.keys.customer_nodes(conv))
        .sadd(state.keys.node_customers(&state.node), conv)
        .ignore()
        .query_async(&mut conn)
        .await?;
    if added == 1 && count == 1 {
        let f = ServerFrame::Presence { customer: conv.to_string(), online: true, last_seen: None }.to_json();
        state.broker().to_all_staff(conv, f).await?;
    }
    Ok(())
}

/// The customer has no socket left on any node: record when they were last
/// seen and tell every agent.
pub async fn customer_offline(state: &AppState, conv: &str, last_seen: i64) -> Result<(), GatewayError> {
    let mut conn = state.redis();
    let _: () = conn.hset(state.keys.customer(conv), "last_seen", last_seen).await?;
    let f = ServerFrame::Presence { customer: conv.to_string(), online: false, last_seen: Some(last_seen) }.to_json();
    state.broker().to_all_staff(conv, f).await
}

/// A closed socket: out of the hub, its watches and presence.
pub async fn unregister(state: &AppState, ident: &Identity, h: &ConnHandle, watched: &HashSet<String>, subscribed: bool) {
    match ident.kind {
        UserKind::Agent => {
            state.registry.remove_agent(h.id);
            unwatch_all(state, h, watched.iter().map(String::as_str));
        }
        UserKind::Customer => {
            let conv = ident.id.as_str();
            if subscribed {
                state.subs.release(&state.keys.channel(conv));
            }
            if state.registry.remove_customer(conv, h.id) == 0 {
                let res: Result<(), GatewayError> = async {
                    let mut conn = state.redis();
                    let now = schema::now_ms();
                    let (_, left): (i64, i64) = redis::pipe()
                        .srem(state.keys.customer_nodes(conv), &state.node)
                        .scard(state.keys.customer_nodes(conv))
                        .srem(state.keys.node_customers(&state.node), conv)
                        .ignore()
                        .query_async(&mut conn)
                        .await?;
                    if left == 0 {
                        customer_offline(state, conv, now).await?;
                    }
                    // A new socket of this customer may have arrived here
                    // while the removal was in flight, its add landing first:
                    // list the node again. Exact, because a socket is in the
                    // registry before its add is sent, and this check runs
                    // after the removal landed.
                    if state.registry.has_customer(conv) {
                        add_customer_node(state, conv).await?;
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = res {
                    tracing::warn!(error = %e, "unregister presence failed");
                }
            }
        }
    }
}


//! This node's pub/sub subscriptions to conversation channels.
//!
//! A node subscribes to a conversation's channel while it holds a socket of
//! its customer or an agent socket watching it (counted here, per node: the
//! first socket subscribes, the last one leaving unsubscribes). The scripts
//! publish each positioned event on the channel atomically with its
//! position, so a node receives a conversation's events in position order
//! and Redis does the fan-out: a send costs one `PUBLISH` whatever the
//! number of nodes, and nothing when no node listens (typing nobody sees).
//!
//! Exactness is the watch rule of before: a socket's writer holds the
//! conversation's live events, the subscription is confirmed, then the
//! writer replays from the client's position; an event numbered before the
//! confirmation is in the replay, one numbered after reaches the channel,
//! and the writer's per-position dedupe drops what both delivered.
//!
//! Pub/sub delivers at most once: when the subscriber connection breaks,
//! what was published meanwhile is missed. On reconnect the node subscribes
//! to every counted channel again and hands each conversation's latest
//! replay entry to its sockets, whose writers fill the gap from the replay
//! stream (the same gap filling as for any missed position).
//!
//! All subscription commands go through one task in the order they were
//! decided, so an unsubscribe and a later subscribe of one channel reach
//! Redis in that order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use schema::envelope::{Audience, Relay};
use tokio::sync::mpsc;

use super::delivery::{deliver, note_relayed};
use crate::hub::subs::Op;
use crate::broker::publish::parse_payload;
use crate::hub::NO_FLOOR;
use crate::state::AppState;

/// Longest wait for a subscription to be confirmed.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);
/// Channels per `SUBSCRIBE` when subscribing again after a reconnect.
const RESUBSCRIBE_CHUNK: usize = 1000;

/// The conversation of a channel name (`<prefix>{c:<id>}`).
fn conversation_of<'a>(prefix: &str, channel: &'a str) -> Option<&'a str> {
    channel.strip_prefix(prefix)?.strip_prefix("{c:")?.strip_suffix('}')
}

/// Runs the subscriber connection until shutdown: executes subscription
/// ops in order, reads the channels and hands their frames to this node's
/// sockets; reconnects, subscribes again and fills what was missed.
pub async fn run(state: AppState, mut ops: mpsc::UnboundedReceiver<Op>) {
    let mut shutdown = state.shutdown.clone();
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let connected = async {
            let client = state.redis_target.pubsub_client()?;
            client.get_async_pubsub().await
        };
        let pubsub = match tokio::time::timeout(Duration::from_secs(3), connected).await {
            Ok(Ok(p)) => p,
            other => {
                let e = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                tracing::warn!(error = %e, "pubsub: cannot connect to redis");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let (mut sink, stream) = pubsub.split();
        let channels = state.subs.channels();
        let mut ok = true;
        for chunk in channels.chunks(RESUBSCRIBE_CHUNK) {
            if sink.subscribe(chunk).await.is_err() {
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        backoff = Duration::from_millis(100);
        let mut reader = tokio::spawn(read(state.clone(), stream));
        if !first {
            tracing::info!(channels = channels.len(), "pubsub: reconnected, filling what was missed");
            tokio::spawn(resync(state.clone(), channels));
        }
        first = false;
        loop {
            tokio::select! {
                _ = &mut reader => {
                    tracing::warn!("pubsub: connection lost, reconnecting");
                    break;
                }
                op = ops.recv() => {
                    let Some(op) = op else { return };
                    let res = match op {
                        Op::Sub(ch, ready) => {
                            let r = tokio::time::timeout(CONFIRM_WAIT, sink.subscribe(&ch)).await;
                            let ok = matches!(r, Ok(Ok(())));
                            if ok {
                                let _ = ready.send(true);
                            }
                            ok
                        }
                        Op::Unsub(ch) => matches!(tokio::time::timeout(CONFIRM_WAIT, sink.unsubscribe(&ch)).await, Ok(Ok(()))),
                    };
                    if !res {
                        reader.abort();
                        break;
                    }
                }
                _ = shutdown.changed() => {
                    reader.abort();
                    return;
                }
            }
        }
    }
}

/// Hands every frame of the subscribed channels to this node's sockets.
async fn read(state: AppState, mut stream: redis::aio::PubSubStream) {
    // Per conversation, the highest position relayed (see `Out::Event::floor`).
    let mut relayed: HashMap<String, u64> = HashMap::new();
    let prefix = state.keys.prefix().to_string();
    while let Some(msg) = stream.next().await {
        let received = Instant::now();
        let channel = msg.get_channel_name();
        let Some(conv) = conversation_of(&prefix, channel) else { continue };
        let Some(relay) = parse_payload(conv, msg.get_payload_bytes()) else {
            tracing::warn!(channel, "pubsub: unreadable payload skipped");
            continue;
        };
        let floor = if relay.pos > 0 { note_relayed(&mut relayed, conv, relay.pos) } else { NO_FLOOR };
        deliver(&state, relay, received, floor, false);
    }
}

/// After a reconnect: each conversation's latest replay entry goes to its
/// sockets here as a live event, so their writers fill from the replay
/// whatever was published while the node was not listening.
async fn resync(state: AppState, channels: Vec<String>) {
    let prefix = state.keys.prefix().to_string();
    let mut conn = state.redis();
    for ch in channels {
        let Some(conv) = conversation_of(&prefix, &ch) else { continue };
        let Ok(Some((pos, frame))) = crate::broker::replay::last(&mut conn, &state.keys.replay(conv)).await else { continue };
        let relay = Relay {
            audience: Audience::Both,
            conversation: Some(conv.to_string()),
            pos,
            frame,
        };
        deliver(&state, relay, Instant::now(), NO_FLOOR, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_give_their_conversation() {
        assert_eq!(conversation_of("t1:", "t1:{c:42}"), Some("42"));
        assert_eq!(conversation_of("t1:", "t2:{c:42}"), None);
        assert_eq!(conversation_of("", "{c:a:b}"), Some("a:b"));
    }
}

//! Delivery to this node's sockets (through the hub): [`deliver`], used by
//! the channel reader ([`super::subs`]) and by the staff stream loop here,
//! which reads what every agent gets (chat-list rows, presence and points)
//! and remembers the highest position relayed per conversation (the `floor`
//! that lets a socket fill reordered publishes on first contact).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Value};
use schema::envelope::{self, Audience, Relay};
use schema::keys::FIELD;

use crate::hub::{Out, NO_FLOOR};
use crate::state::AppState;

/// A read returning at least this many entries starts the linger.
const LINGER_FROM: usize = 8;

/// Hands a relayed frame to this node's sockets. `floor`: see [`Out::Event`].
/// `all_staff`: the frame came from the staff stream and is for every agent
/// socket; otherwise its staff side is for the agents watching its conversation.
pub fn deliver(state: &AppState, relay: Relay, received: Instant, floor: u64, all_staff: bool) {
    let frame: Arc<str> = Arc::from(relay.frame);
    let conv: Option<Arc<str>> = relay.conversation.map(Arc::from);
    let make = || match (&conv, relay.pos) {
        (Some(c), p) if p > 0 => Out::Event { conv: c.clone(), pos: p, frame: frame.clone(), floor },
        _ => Out::Frame(frame.clone()),
    };
    if matches!(relay.audience, Audience::Staff | Audience::Both) {
        if all_staff && state.cfg.row_flush_ms > 0 && frame.starts_with(schema::frames::ServerFrame::CONVERSATION_PREFIX) {
            // A chat-list row: state, the latest wins (`flush_rows`).
            if let Some(c) = &conv {
                if state.rows.put(c, frame.clone()) {
                    metrics::counter!(crate::metrics::ROWS_COALESCED).increment(1);
                }
            }
        } else if all_staff {
            state.registry.for_agents(|h| {
                h.push(make());
            });
        } else if let Some(c) = &conv {
            state.registry.for_watchers(c, |h| {
                h.push(make());
            });
        }
    }
    if matches!(relay.audience, Audience::Customer | Audience::Both) {
        if let Some(c) = &conv {
            state.registry.for_customer(c, |h| {
                h.push(make());
            });
        }
    }
    metrics::histogram!(crate::metrics::RELAY_SECONDS).record(received.elapsed().as_secs_f64());
}

/// Sends the chat-list rows waiting in the node's board ([`crate::hub::rows`])
/// to every agent socket, one shared queue item per socket per flush, at most
/// once per `CHAT_ROW_FLUSH_MS`, until shutdown.
pub async fn flush_rows(state: AppState) {
    let every = Duration::from_millis(state.cfg.row_flush_ms.max(1));
    let max = state.cfg.rows_per_flush as usize;
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            _ = state.rows.wait() => {}
            _ = shutdown.changed() => return,
        }
        // Flush what waits, then again after the interval while rows keep
        // coming: the first row after a quiet spell waits for nothing.
        loop {
            let rows = state.rows.take(max);
            if rows.is_empty() {
                break;
            }
            metrics::counter!(crate::metrics::ROWS_FLUSHED).increment(rows.len() as u64);
            let rows: Arc<[Arc<str>]> = rows.into();
            state.registry.for_agents(|h| {
                h.push(Out::Frames(rows.clone()));
            });
            tokio::time::sleep(every).await;
        }
    }
}

/// Reads the staff stream (chat-list rows, presence and points, for every
/// agent socket) until shutdown. Conversation frames come by pub/sub
/// ([`super::subs`]).
pub async fn relay_loops(state: AppState) {
    let staff = state.keys.staff_events();
    stream_loop(state, vec![staff]).await;
}

/// Reads relay streams from their current ends until shutdown, handing every
/// entry to this node's sockets, on its own connection because `XREAD BLOCK`
/// would stall a shared multiplexed one.
async fn stream_loop(state: AppState, keys: Vec<String>) {
    // "$": not started yet (start after whatever is there now: nothing older is for our sockets).
    let mut last_ids: Vec<String> = vec![String::from("$"); keys.len()];
    // Per stream: the highest position relayed per conversation. Two sends
    // to one conversation from different nodes can be published in the
    // opposite order of their positions; a socket that meets the
    // conversation for the first time with the later one must still get the
    // earlier one (from the replay stream) before it: what lies between
    // this and the event's position is in flight, hence after the socket.
    let mut relayed: Vec<HashMap<String, u64>> = vec![HashMap::new(); keys.len()];
    let mut shutdown = state.shutdown.clone();
    let mut backoff = Duration::from_millis(100);
    let linger = Duration::from_micros(state.cfg.inbox_linger_us);
    let staff_key = state.keys.staff_events();
    loop {
        if *shutdown.borrow() {
            return;
        }
        // BLOCK 1000 plus slack: a Redis that stops answering is noticed in seconds.
        let mut conn = match state.redis_target.connect(Duration::from_millis(3000)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "relay streams: cannot connect to redis");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        for (key, last_id) in keys.iter().zip(last_ids.iter_mut()) {
            if last_id == "$" {
                let id: Result<Vec<(String, Value)>, _> = conn.xrevrange_count(key, "+", "-", 1).await;
                *last_id = match id {
                    Ok(v) => v.first().map(|(id, _)| id.clone()).unwrap_or_else(|| "0-0".into()),
                    Err(_) => "0-0".into(),
                };
            }
        }
        backoff = Duration::from_millis(100);
        loop {
            let opts = StreamReadOptions::default().block(1000).count(1024);
            let read = tokio::select! {
                r = conn.xread_options::<_, _, StreamReadReply>(&keys, &last_ids, &opts) => r,
                _ = shutdown.changed() => return,
            };
            match read {
                Ok(reply) => {
                    let received = Instant::now();
                    let mut full = false;
                    let mut got = 0;
                    for k in reply.keys {
                        metrics::histogram!(crate::metrics::INBOX_BATCH).record(k.ids.len() as f64);
                        full |= k.ids.len() >= 1024;
                        got += k.ids.len();
                        let Some(i) = keys.iter().position(|x| *x == k.key) else { continue };
                        for entry in k.ids {
                            last_ids[i] = entry.id.clone();
                            let Some(Value::BulkString(bytes)) = entry.map.get(FIELD) else { continue };
                            match envelope::decode::<Relay>(bytes) {
                                Ok(relay) => {
                                    let floor = match (&relay.conversation, relay.pos) {
                                        (Some(c), p) if p > 0 => note_relayed(&mut relayed[i], c, p),
                                        _ => NO_FLOOR,
                                    };
                                    deliver(&state, relay, received, floor, keys[i] == staff_key)
                                }
                                Err(e) => tracing::warn!(error = %e, "relay streams: undecodable entry skipped"),
                            }
                        }
                    }
                    // Entries arriving faster than one per read (a busy node):
                    // wait so that the next read gathers more. A quiet node
                    // reads again at once, so light traffic pays no latency.
                    if !full && got >= LINGER_FROM && linger > Duration::ZERO {
                        tokio::time::sleep(linger).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay streams: read failed, reconnecting");
                    tokio::time::sleep(backoff).await;
                    break;
                }
            }
        }
    }
}

/// Records that `pos` of `conv` was relayed; returns the highest position
/// relayed before it ([`NO_FLOOR`] when none since this node started).
pub fn note_relayed(seen: &mut HashMap<String, u64>, conv: &str, pos: u64) -> u64 {
    // Bounded: forgetting only turns the floor back to "unknown".
    const MAX_CONVERSATIONS: usize = 1_000_000;
    if let Some(m) = seen.get_mut(conv) {
        let before = *m;
        *m = before.max(pos);
        return before;
    }
    if seen.len() >= MAX_CONVERSATIONS {
        seen.clear();
    }
    seen.insert(conv.to_string(), pos);
    NO_FLOOR
}

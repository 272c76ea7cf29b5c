//! This node's subscriptions to conversation channels, counted per channel:
//! the first socket that needs one subscribes, the last one leaving
//! unsubscribes. The commands go, in the order they were decided, to the
//! subscriber connection (`node/subs.rs`), which confirms each
//! subscription.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::error::GatewayError;

/// Longest wait for a subscription to be confirmed.
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

pub enum Op {
    Sub(String, watch::Sender<bool>),
    Unsub(String),
}

struct Entry {
    count: usize,
    ready: watch::Receiver<bool>,
}

/// Counts this node's sockets per conversation channel.
pub struct Subs {
    entries: Mutex<HashMap<String, Entry>>,
    ops: mpsc::UnboundedSender<Op>,
}

impl Subs {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Op>) {
        let (ops, rx) = mpsc::unbounded_channel();
        (Self { entries: Mutex::new(HashMap::new()), ops }, rx)
    }

    /// One more socket here needs `channel`; returns once the node is
    /// subscribed (at once when it already was).
    pub async fn acquire(&self, channel: &str) -> Result<(), GatewayError> {
        let mut ready = {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            match map.get_mut(channel) {
                Some(e) => {
                    e.count += 1;
                    e.ready.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(false);
                    // Sent under the lock: ops reach Redis in decision order.
                    let _ = self.ops.send(Op::Sub(channel.to_string(), tx));
                    map.insert(channel.to_string(), Entry { count: 1, ready: rx.clone() });
                    rx
                }
            }
        };
        let confirmed = matches!(tokio::time::timeout(CONFIRM_WAIT, ready.wait_for(|r| *r)).await, Ok(Ok(_)));
        if confirmed {
            return Ok(());
        }
        self.release(channel);
        Err(GatewayError::client(schema::frames::ErrorCode::Unavailable, "could not subscribe, retry"))
    }

    /// A socket here no longer needs `channel`; the last one unsubscribes.
    pub fn release(&self, channel: &str) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(channel) {
            e.count -= 1;
            if e.count == 0 {
                map.remove(channel);
                let _ = self.ops.send(Op::Unsub(channel.to_string()));
            }
        }
    }

    /// The channels currently counted.
    pub fn channels(&self) -> Vec<String> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// Channels counted (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}


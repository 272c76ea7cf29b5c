//! Chat-list rows on their way to this node's agent sockets, coalesced.
//!
//! Every agent socket gets every conversation's row (`conversation` frame)
//! from the staff stream. Rows are state, not events: only the latest of a
//! conversation matters, so the node keeps the rows waiting for the next
//! flush in one board, a newer row of a conversation replacing the older
//! in place ([`RowBoard::put`]). The flusher (`node::delivery::flush_rows`)
//! sends a board's rows to every agent socket as one queue item
//! ([`super::Out::Frames`], shared, not copied per socket), at most once per
//! `CHAT_ROW_FLUSH_MS` and at most `CHAT_ROWS_PER_FLUSH` rows each time (the
//! rest wait, still coalescing, oldest first): per socket at most
//! `CHAT_ROWS_PER_FLUSH * 1000 / CHAT_ROW_FLUSH_MS` rows a second, whatever
//! the traffic. A row after a quiet spell goes out at once (the wait is only
//! between flushes), so light traffic pays no latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

#[derive(Default)]
struct Pending {
    /// Conversation -> (arrival order of its first waiting row, latest row).
    rows: HashMap<Arc<str>, (u64, Arc<str>)>,
    next: u64,
}

/// The rows waiting for the next flush (see the module docs).
#[derive(Default)]
pub struct RowBoard {
    pending: Mutex<Pending>,
    wake: Notify,
}

impl RowBoard {
    /// Queues `frame` as `conv`'s row; returns true when it replaced a row
    /// still waiting (coalesced: that one is never sent).
    pub fn put(&self, conv: &str, frame: Arc<str>) -> bool {
        let replaced = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let order = p.next;
            match p.rows.get_mut(conv) {
                Some(slot) => {
                    slot.1 = frame;
                    true
                }
                None => {
                    p.next += 1;
                    p.rows.insert(Arc::from(conv), (order, frame));
                    false
                }
            }
        };
        self.wake.notify_one();
        replaced
    }

    /// Takes at most `max` waiting rows, those waiting longest first.
    pub fn take(&self, max: usize) -> Vec<Arc<str>> {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.rows.len() <= max {
            let mut all: Vec<(u64, Arc<str>)> = p.rows.drain().map(|(_, v)| v).collect();
            all.sort_unstable_by_key(|(o, _)| *o);
            return all.into_iter().map(|(_, f)| f).collect();
        }
        let mut order: Vec<(u64, Arc<str>)> = p.rows.iter().map(|(c, (o, _))| (*o, c.clone())).collect();
        order.sort_unstable_by_key(|(o, _)| *o);
        order.truncate(max);
        order.into_iter().filter_map(|(_, c)| p.rows.remove(&c).map(|(_, f)| f)).collect()
    }

    /// Rows waiting now.
    pub fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns once a row was put since the last call (at once if one was).
    pub async fn wait(&self) {
        self.wake.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn the_latest_row_of_a_conversation_wins_in_its_first_place() {
        let b = RowBoard::default();
        assert!(!b.put("a", row("a1")));
        assert!(!b.put("b", row("b1")));
        assert!(b.put("a", row("a2")));
        assert_eq!(b.take(10), vec![row("a2"), row("b1")]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_flush_takes_at_most_max_rows_oldest_first_and_the_rest_keep_coalescing() {
        let b = RowBoard::default();
        for c in ["c0", "c1", "c2", "c3"] {
            b.put(c, row(&format!("{c} v1")));
        }
        assert_eq!(b.take(2), vec![row("c0 v1"), row("c1 v1")]);
        b.put("c3", row("c3 v2"));
        b.put("c0", row("c0 v2"));
        assert_eq!(b.take(2), vec![row("c2 v1"), row("c3 v2")]);
        assert_eq!(b.take(2), vec![row("c0 v2")]);
        assert!(b.take(2).is_empty());
    }

    #[tokio::test]
    async fn a_put_before_the_wait_is_not_missed() {
        let b = RowBoard::default();
        b.put("a", row("a1"));
        tokio::time::timeout(std::time::Duration::from_secs(1), b.wait()).await.expect("woken by the earlier put");
    }
}

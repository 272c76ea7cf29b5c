//! The ordering rules of one socket: every positioned event of a
//! conversation is written once and in order. Pure decisions over a small
//! [`ReplaySource`] (the writer's is the Redis replay stream; tests use a
//! map), so each rule is unit-tested without Redis:
//!
//! - **late duplicate**: a position at or below the highest written one is
//!   dropped (the replay or another route delivered it already);
//! - **gap fill**: a position past the next one first gets the missing
//!   positions from the replay;
//! - **first contact with reordered publishes** (docs/architecture.md,
//!   "Positions are assigned in the script, but published in a second round
//!   trip..."): with nothing written yet in the conversation, the node's
//!   `floor` (the highest position it relayed before) says what is still in
//!   flight and is filled; when the node relayed nothing of it either, the
//!   positions just before (at most [`FIRST_CONTACT_WINDOW`]) that were sent
//!   after the socket opened are written first.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use schema::limits::MAX_REPLAY;

use crate::hub::NO_FLOOR;

/// Positions remembered per socket before the map is reset.
pub const MAX_TRACKED: usize = 50_000;
/// Widest reorder of one conversation's events filled from the node's floor.
pub const MAX_IN_FLIGHT: u64 = 64;
/// Positions looked at before a conversation's first event on a node that
/// has relayed nothing of it yet.
pub const FIRST_CONTACT_WINDOW: u64 = 16;

/// Reads a conversation's replay: the entries with positions in
/// `from..=to`, at most `limit`, in order (empty when it cannot be read).
pub trait ReplaySource {
    fn range(&mut self, conv: &str, from: u64, to: u64, limit: usize) -> impl Future<Output = Vec<(u64, String)>> + Send;
}

/// What to write for one live event, in order: `fills` (from the replay),
/// then the event itself when `write`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    pub fills: Vec<String>,
    pub write: bool,
    /// A replay read was needed (counted as a gap fill).
    pub filled: bool,
}

/// Which replay entries a fill keeps.
enum Keep {
    /// Those after the position already written (or relayed by the node).
    After(u64),
    /// Those sent since the socket opened (ms).
    SentSince(i64),
}

/// The per-socket ordering state: the highest position written per conversation.
#[derive(Debug)]
pub struct EventOrder {
    hw: HashMap<Arc<str>, u64>,
    /// When the socket opened (ms): events sent since are owed to it.
    opened_ms: i64,
}

impl EventOrder {
    pub fn new(opened_ms: i64) -> Self {
        Self { hw: HashMap::new(), opened_ms }
    }

    /// The highest position written in `conv`.
    pub fn written(&self, conv: &str) -> Option<u64> {
        self.hw.get(conv).copied()
    }

    /// Decides and fetches what to write for event `pos` of `conv`; `floor`
    /// is the node's highest position relayed before it ([`NO_FLOOR`]: none).
    pub async fn event<R: ReplaySource>(&mut self, src: &mut R, conv: &Arc<str>, pos: u64, floor: u64) -> Delivery {
        let need = match self.hw.get(conv).copied() {
            Some(h) if pos <= h => return Delivery::default(),
            Some(h) if pos > h + 1 => Some(((pos - h - 1).min(MAX_REPLAY as u64), Keep::After(h))),
            // In-flight reorders span a few positions; a wide gap means the
            // node missed a stretch (the customer was elsewhere): not ours to fill.
            None if floor != NO_FLOOR && pos > floor + 1 && pos - floor <= MAX_IN_FLIGHT => {
                Some(((pos - floor - 1).min(MAX_REPLAY as u64), Keep::After(floor)))
            }
            // The node has relayed nothing of this conversation yet, so it
            // cannot tell which earlier positions are still in flight (sent
            // from another node, published after this one): write those sent
            // since the socket opened first, or they would come after this
            // event and be dropped as already passed.
            None if floor == NO_FLOOR && pos > 1 => Some((FIRST_CONTACT_WINDOW, Keep::SentSince(self.opened_ms))),
            _ => None,
        };
        let mut d = Delivery { fills: Vec::new(), write: true, filled: need.is_some() };
        if let Some((n, keep)) = need {
            let from = pos.saturating_sub(n).max(1);
            for (p, f) in src.range(conv, from, pos - 1, n as usize).await {
                let keep = match keep {
                    Keep::After(h) => p > h,
                    Keep::SentSince(opened) => sent_at(&f).is_some_and(|t| t >= opened),
                };
                if keep {
                    d.fills.push(f);
                }
            }
        }
        if self.hw.len() >= MAX_TRACKED {
            self.hw.clear();
        }
        self.hw.insert(conv.clone(), pos);
        d
    }

    /// A resume wrote `conv` up to `to`.
    pub fn resumed(&mut self, conv: Arc<str>, to: u64) {
        let hw = self.hw.entry(conv).or_insert(0);
        *hw = (*hw).max(to);
    }

    /// The socket stopped watching `conv`: forget its position.
    pub fn forget(&mut self, conv: &str) {
        self.hw.remove(conv);
    }
}

/// When a positioned event was sent: a message's `ts`, an edit's
/// `edited_at`; `None` for the others (deletions, reactions), which then
/// count as older than the socket.
fn sent_at(frame: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(frame).ok()?;
    v["message"]["ts"].as_i64().or_else(|| v["edited_at"].as_i64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A conversation's replay stream in memory; counts its reads.
    #[derive(Default)]
    struct Replay {
        entries: BTreeMap<u64, String>,
        reads: usize,
    }

    impl ReplaySource for Replay {
        fn range(&mut self, _conv: &str, from: u64, to: u64, limit: usize) -> impl Future<Output = Vec<(u64, String)>> + Send {
            self.reads += 1;
            let v = self.entries.range(from..=to).take(limit).map(|(p, f)| (*p, f.clone())).collect();
            std::future::ready(v)
        }
    }

    fn message(pos: u64, ts: i64) -> String {
        format!(r#"{{"type":"message","conversation":"c","pos":{pos},"message":{{"seq":{pos},"ts":{ts}}}}}"#)
    }

    fn replay(range: std::ops::RangeInclusive<u64>, ts: impl Fn(u64) -> i64) -> Replay {
        Replay { entries: range.map(|p| (p, message(p, ts(p)))).collect(), reads: 0 }
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn c() -> Arc<str> {
        Arc::from("c")
    }

    #[test]
    fn next_position_is_written_without_a_replay_read() {
        run(async {
            let mut src = replay(1..=10, |_| 0);
            let mut o = EventOrder::new(0);
            o.resumed(c(), 5);
            let d = o.event(&mut src, &c(), 6, NO_FLOOR).await;
            assert_eq!(d, Delivery { fills: vec![], write: true, filled: false });
            assert_eq!(src.reads, 0);
            assert_eq!(o.written("c"), Some(6));
        })
    }

    #[test]
    fn a_gap_is_filled_from_the_replay_before_the_event() {
        run(async {
            let mut src = replay(1..=10, |_| 0);
            let mut o = EventOrder::new(0);
            o.resumed(c(), 3);
            let d = o.event(&mut src, &c(), 7, NO_FLOOR).await;
            assert!(d.write && d.filled);
            assert_eq!(d.fills, vec![message(4, 0), message(5, 0), message(6, 0)]);
            assert_eq!(o.written("c"), Some(7));
        })
    }

    #[test]
    fn a_late_duplicate_is_dropped() {
        run(async {
            let mut src = replay(1..=10, |_| 0);
            let mut o = EventOrder::new(0);
            o.resumed(c(), 6);
            // 8 arrives before 7: 7 is filled from the replay, then 8 written...
            let d = o.event(&mut src, &c(), 8, NO_FLOOR).await;
            assert_eq!(d.fills, vec![message(7, 0)]);
            assert!(d.write);
            // ...and the late 7 is dropped, as is a repeat of 8.
            assert_eq!(o.event(&mut src, &c(), 7, NO_FLOOR).await, Delivery::default());
            assert_eq!(o.event(&mut src, &c(), 8, NO_FLOOR).await, Delivery::default());
            assert_eq!(o.written("c"), Some(8));
        })
    }

    #[test]
    fn first_contact_fills_what_is_in_flight_above_the_nodes_floor() {
        run(async {
            let mut src = replay(1..=10, |_| 0);
            let mut o = EventOrder::new(i64::MAX);
            // The node relayed 6 before 8 arrived: 7 is in flight, hence owed.
            let d = o.event(&mut src, &c(), 8, 6).await;
            assert_eq!(d.fills, vec![message(7, 0)]);
            assert!(d.write);
            assert_eq!(o.event(&mut src, &c(), 7, 8).await, Delivery::default());
        })
    }

    #[test]
    fn first_contact_with_a_wide_gap_above_the_floor_fills_nothing() {
        run(async {
            let mut src = replay(1..=200, |_| 0);
            let mut o = EventOrder::new(0);
            let d = o.event(&mut src, &c(), 100, 100 - MAX_IN_FLIGHT - 1).await;
            assert_eq!(d, Delivery { fills: vec![], write: true, filled: false });
        })
    }

    #[test]
    fn first_contact_with_reordered_publishes_and_no_floor_writes_what_was_sent_since_the_socket_opened() {
        run(async {
            // The socket opened at t=1000; positions 1..=6 were sent before
            // (history), 7 after it. Publishes arrive 8, then 7.
            let mut src = replay(1..=8, |p| if p <= 6 { 500 } else { 1000 + p as i64 });
            let mut o = EventOrder::new(1000);
            let d = o.event(&mut src, &c(), 8, NO_FLOOR).await;
            assert_eq!(d.fills, vec![message(7, 1007)]);
            assert!(d.write);
            // The late 7 is then dropped as written.
            assert_eq!(o.event(&mut src, &c(), 7, NO_FLOOR).await, Delivery::default());
        })
    }

    #[test]
    fn forgetting_a_conversation_starts_it_over() {
        run(async {
            let mut src = replay(1..=3, |_| 0);
            let mut o = EventOrder::new(i64::MAX);
            o.resumed(c(), 3);
            o.forget("c");
            assert_eq!(o.written("c"), None);
            // Position 1 needs nothing before it.
            assert_eq!(o.event(&mut src, &c(), 1, NO_FLOOR).await, Delivery { fills: vec![], write: true, filled: false });
        })
    }
}

//! Counters and latency histograms of one run, and the delivery ledger:
//! every message is stamped (sender, number); each receiver marks what it
//! got, so lost, duplicated and out-of-order deliveries are counted exactly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A histogram of microseconds, 1 µs .. 10 min, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

/// Counters shared by every connection of a run.
pub struct Live {
    /// send-to-receive latency (µs from the scheduled send time).
    pub latency: Mutex<Histogram<u64>>,
    /// send-to-ack latency (µs from the scheduled send time).
    pub ack: Mutex<Histogram<u64>>,
    pub scheduled_msgs: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    pub deliveries: AtomicU64,
    pub typing: AtomicU64,
    pub seen: AtomicU64,
    pub frames_in: AtomicU64,
    pub disconnects: AtomicU64,
    /// Close codes the servers sent (4008: slow consumer), with counts.
    pub close_codes: Mutex<std::collections::BTreeMap<u16, u64>>,
    /// Latencies of messages scheduled before this (µs since epoch) are not recorded.
    pub record_from_us: u64,
}

impl Live {
    pub fn new(record_from_us: u64) -> Live {
        Live {
            latency: Mutex::new(histogram()),
            ack: Mutex::new(histogram()),
            scheduled_msgs: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            typing: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            close_codes: Mutex::new(Default::default()),
            record_from_us,
        }
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record(&self, h: &Mutex<Histogram<u64>>, sched_us: u64, now_us: u64) {
        if sched_us >= self.record_from_us {
            if let Ok(mut h) = h.lock() {
                h.saturating_record(now_us.saturating_sub(sched_us).max(1));
            }
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |v: u64| v as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Status of a sent message.
pub const WRITTEN: u8 = 0;
pub const ACKED: u8 = 1;
pub const FAILED: u8 = 2;

/// One message a connection sent.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// The customer (index) whose conversation it went to.
    pub conv: u32,
    pub status: u8,
}

/// What one receiver got from one sender: a bitmap of message numbers.
#[derive(Debug, Default, Clone)]
pub struct Track {
    bits: Vec<u64>,
    max: Option<u64>,
}

/// Receiver side of the ledger for one connection.
#[derive(Debug, Default)]
pub struct Ledger {
    pub from: HashMap<u32, Track>,
    pub duplicated: u64,
    pub out_of_order: u64,
}

impl Ledger {
    pub fn mark(&mut self, origin: u32, k: u64) -> bool {
        let t = self.from.entry(origin).or_default();
        let (w, b) = ((k / 64) as usize, k % 64);
        if t.bits.len() <= w {
            t.bits.resize(w + 1, 0);
        }
        if t.bits[w] & (1 << b) != 0 {
            self.duplicated += 1;
            return false;
        }
        t.bits[w] |= 1 << b;
        match t.max {
            Some(m) if k < m => self.out_of_order += 1,
            _ => t.max = Some(k),
        }
        true
    }
    pub fn has(&self, origin: u32, k: u64) -> bool {
        self.from
            .get(&origin)
            .and_then(|t| t.bits.get((k / 64) as usize))
            .is_some_and(|w| w & (1 << (k % 64)) != 0)
    }
}

/// What one connection hands back at the end of a run.
#[derive(Debug, Default)]
pub struct ConnResult {
    pub origin: u32,
    pub is_agent: bool,
    pub sent: Vec<Sent>,
    pub ledger: Ledger,
}

/// Delivery totals of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Deliveries {
    /// Messages written to a socket.
    pub sent: u64,
    pub acked: u64,
    /// Answered with an error (rate limited, unavailable...).
    pub failed: u64,
    /// Neither acked nor refused by the end of the drain.
    pub unacked: u64,
    /// (message, receiver) pairs that should have arrived.
    pub expected: u64,
    pub delivered: u64,
    /// Messages delivered to every receiver they were meant for.
    pub complete_messages: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// A few lost deliveries, "sender/n -> receiver" (agents are named aN).
    pub lost_examples: Vec<String>,
}

/// Checks every acked message against every receiver it was meant for: each
/// agent socket (staff see every conversation) and the customer's socket.
pub fn reconcile(results: &[ConnResult]) -> Deliveries {
    let mut d = Deliveries::default();
    let by_origin: HashMap<u32, &ConnResult> = results.iter().map(|r| (r.origin, r)).collect();
    let agents: Vec<&ConnResult> = results.iter().filter(|r| r.is_agent).collect();
    for r in results {
        d.duplicated += r.ledger.duplicated;
        d.out_of_order += r.ledger.out_of_order;
        for (k, s) in r.sent.iter().enumerate() {
            d.sent += 1;
            match s.status {
                ACKED => d.acked += 1,
                FAILED => {
                    d.failed += 1;
                    continue;
                }
                _ => d.unacked += 1,
            }
            let customer = by_origin.get(&s.conv);
            let mut all = true;
            for rcv in agents.iter().copied().chain(customer.copied()) {
                d.expected += 1;
                if rcv.ledger.has(r.origin, k as u64) {
                    d.delivered += 1;
                } else {
                    d.lost += 1;
                    all = false;
                    if d.lost_examples.len() < 10 {
                        let name = |c: &ConnResult| if c.is_agent { format!("a{}", c.origin) } else { format!("c{}", c.origin) };
                        d.lost_examples.push(format!("{}/{} of {} -> {}", name(r), k, r.sent.len(), name(rcv)));
                    }
                }
            }
            if all {
                d.complete_messages += 1;
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_counts() {
        let mut l = Ledger::default();
        assert!(l.mark(1, 0));
        assert!(l.mark(1, 2));
        assert!(l.mark(1, 1));
        assert!(!l.mark(1, 1));
        assert_eq!((l.duplicated, l.out_of_order), (1, 1));
        assert!(l.has(1, 2) && !l.has(1, 3) && !l.has(2, 0));
    }

    #[test]
    fn reconcile_finds_losses() {
        let mut cust = ConnResult { origin: 0, is_agent: false, ..Default::default() };
        let mut agent = ConnResult { origin: 1, is_agent: true, ..Default::default() };
        cust.sent = vec![Sent { conv: 0, status: ACKED }, Sent { conv: 0, status: ACKED }];
        agent.sent = vec![Sent { conv: 0, status: ACKED }];
        cust.ledger.mark(0, 0);
        cust.ledger.mark(0, 1);
        cust.ledger.mark(1, 0);
        agent.ledger.mark(0, 0);
        agent.ledger.mark(1, 0);
        let d = reconcile(&[cust, agent]);
        assert_eq!(d.expected, 6);
        assert_eq!(d.lost, 1);
        assert_eq!(d.complete_messages, 2);
    }
}

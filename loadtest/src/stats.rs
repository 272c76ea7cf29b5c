//! Counters and latency histograms of one run, and the delivery ledger:
//! every message is stamped (sender, number); each receiver marks what it
//! got, so lost, duplicated and out-of-order deliveries are counted exactly.
//!
//! A message in conversation c is meant for c's customer socket and for every
//! agent socket that watches c (docs/protocol.md, `watch`); nobody else.

use std::collections::{BTreeMap, HashMap};
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
    /// The part of `latency` measured at agent sockets (watchers; in the
    /// relay mix, the deliveries that crossed to the other gateway).
    pub latency_at_agents: Mutex<Histogram<u64>>,
    /// send-to-ack latency (µs from the scheduled send time).
    pub ack: Mutex<Histogram<u64>>,
    pub scheduled_msgs: AtomicU64,
    /// Connections whose schedule is over (every action written and
    /// flushed, or the socket gone): until all are, `scheduled_msgs` may
    /// still grow (a task woken late writes its last actions after `end`).
    pub schedules_done: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    pub deliveries: AtomicU64,
    /// (message, receiver) pairs the acked messages are meant for (the drain waits for them).
    pub expected: AtomicU64,
    /// Chat-list rows (`conversation` frames) the agents received.
    pub rows: AtomicU64,
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
            latency_at_agents: Mutex::new(histogram()),
            ack: Mutex::new(histogram()),
            scheduled_msgs: AtomicU64::new(0),
            schedules_done: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            rows: AtomicU64::new(0),
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
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
    /// The drain's end: all `connections` have finished their schedules,
    /// every message written is acked or refused, and every delivery owed
    /// to the acked ones is in. Without the first condition a run could
    /// stop reading while a late task's last message was still in flight,
    /// and count it lost (it did so for the Socket.IO peer, whose runs had
    /// no wait of their own after the traffic: about one message in 10,000).
    pub fn drained(&self, connections: u64) -> bool {
        Live::get(&self.schedules_done) >= connections
            && Live::get(&self.acked) + Live::get(&self.errors) >= Live::get(&self.scheduled_msgs)
            && Live::get(&self.deliveries) >= Live::get(&self.expected)
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
    /// Distinct messages received (first copies).
    pub marked: u64,
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
        self.marked += 1;
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
    /// Agents: the conversations (customer indexes) this socket watches.
    pub watching: Vec<u32>,
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
    /// The part of `expected` / `delivered` at agent sockets (watchers).
    pub expected_at_agents: u64,
    pub delivered_at_agents: u64,
    /// Messages received by a socket they were not meant for (an agent that
    /// does not watch the conversation, another customer).
    pub unexpected: u64,
    /// Messages delivered to every receiver they were meant for.
    pub complete_messages: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    /// A few lost deliveries, "sender/n -> receiver" (agents are named aN).
    pub lost_examples: Vec<String>,
}

/// The agent sockets watching each conversation (by customer index).
pub fn watchers_of(results: &[ConnResult]) -> HashMap<u32, Vec<&ConnResult>> {
    let mut m: HashMap<u32, Vec<&ConnResult>> = HashMap::new();
    for r in results.iter().filter(|r| r.is_agent) {
        for c in &r.watching {
            m.entry(*c).or_default().push(r);
        }
    }
    m
}

/// Checks every message that was not refused against every receiver it was
/// meant for: the conversation's customer socket and each agent socket
/// watching the conversation. Anything else received is `unexpected`.
pub fn reconcile(results: &[ConnResult]) -> Deliveries {
    let mut d = Deliveries::default();
    let by_origin: HashMap<u32, &ConnResult> = results.iter().filter(|r| !r.is_agent).map(|r| (r.origin, r)).collect();
    let watchers = watchers_of(results);
    let mut marked = 0;
    for r in results {
        d.duplicated += r.ledger.duplicated;
        d.out_of_order += r.ledger.out_of_order;
        marked += r.ledger.marked;
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
            let agents = watchers.get(&s.conv).map(Vec::as_slice).unwrap_or_default();
            let mut all = true;
            for rcv in agents.iter().copied().chain(customer.copied()) {
                d.expected += 1;
                d.expected_at_agents += u64::from(rcv.is_agent);
                if rcv.ledger.has(r.origin, k as u64) {
                    d.delivered += 1;
                    d.delivered_at_agents += u64::from(rcv.is_agent);
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
    d.unexpected = marked.saturating_sub(d.delivered);
    d
}

/// `INFO commandstats` as (command -> (calls, usec)); subcommands keep
/// Redis's name (`client|setname`).
pub fn parse_commandstats(info: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line.trim().strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else { continue };
        let field = |f: &str| rest.split(',').find_map(|kv| kv.strip_prefix(f)?.strip_prefix('=')?.parse::<u64>().ok());
        if let (Some(calls), Some(usec)) = (field("calls"), field("usec")) {
            out.insert(name.to_string(), (calls, usec));
        }
    }
    out
}

/// One Redis command's share of a run.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CommandFigures {
    pub calls: u64,
    pub usec: u64,
    pub calls_per_msg: f64,
    pub usec_per_msg: f64,
}

/// The Redis commands of a run window, per command and per message: the
/// difference of two `INFO commandstats`, less the tool's own calls
/// (`own`: its `INFO` and the drain's `XLEN`s; their time stays in, a few
/// µs), divided by `msgs`. None when the counters went backwards (someone
/// ran `CONFIG RESETSTAT` in the window): the figures would be wrong.
pub fn commands_per_message(
    before: &BTreeMap<String, (u64, u64)>,
    after: &BTreeMap<String, (u64, u64)>,
    own: &BTreeMap<String, u64>,
    msgs: u64,
) -> Option<BTreeMap<String, CommandFigures>> {
    if before.iter().any(|(n, (c, u))| after.get(n).is_none_or(|(c1, u1)| c1 < c || u1 < u)) {
        return None;
    }
    let per = |v: u64| if msgs > 0 { v as f64 / msgs as f64 } else { 0.0 };
    let mut out = BTreeMap::new();
    for (name, (c1, u1)) in after {
        let (c0, u0) = before.get(name).copied().unwrap_or((0, 0));
        let calls = (c1 - c0).saturating_sub(own.get(name).copied().unwrap_or(0));
        let usec = u1 - u0;
        if calls == 0 {
            continue;
        }
        out.insert(name.clone(), CommandFigures { calls, usec, calls_per_msg: per(calls), usec_per_msg: per(usec) });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_per_message() {
        let before = parse_commandstats(
            "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=100,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_info:calls=2,usec=118,usec_per_call=59.00,rejected_calls=0,failed_calls=0\r\n\
             cmdstat_client|setname:calls=1,usec=1,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n",
        );
        assert_eq!(before.get("evalsha"), Some(&(10, 100)));
        assert_eq!(before.get("client|setname"), Some(&(1, 1)));
        let after = parse_commandstats(
            "cmdstat_evalsha:calls=2010,usec=6100,usec_per_call=3.03,rejected_calls=0,failed_calls=0\n\
             cmdstat_info:calls=3,usec=178,usec_per_call=59.33,rejected_calls=0,failed_calls=0\n\
             cmdstat_client|setname:calls=1,usec=1,usec_per_call=1.00,rejected_calls=0,failed_calls=0\n\
             cmdstat_xlen:calls=8,usec=8,usec_per_call=1.00,rejected_calls=0,failed_calls=0\n\
             cmdstat_xreadgroup:calls=500,usec=4000,usec_per_call=8.00,rejected_calls=0,failed_calls=0\n",
        );
        let own = BTreeMap::from([("info".to_string(), 1), ("xlen".to_string(), 8)]);
        let m = commands_per_message(&before, &after, &own, 1000).expect("no reset");
        // The tool's own INFO and XLENs are not the stack's; unchanged commands are left out.
        assert_eq!(m.keys().collect::<Vec<_>>(), vec!["evalsha", "xreadgroup"]);
        assert_eq!(m["evalsha"], CommandFigures { calls: 2000, usec: 6000, calls_per_msg: 2.0, usec_per_msg: 6.0 });
        assert_eq!(m["xreadgroup"].calls_per_msg, 0.5);
        // Counters reset in the window: no figures rather than wrong ones.
        assert_eq!(commands_per_message(&after, &before, &own, 1000), None);
    }

    #[test]
    fn the_drain_waits_for_every_schedule() {
        let live = Live::new(0);
        // Two connections; one has written, been acked for and received its message.
        Live::inc(&live.scheduled_msgs);
        Live::inc(&live.acked);
        Live::inc(&live.expected);
        Live::inc(&live.deliveries);
        Live::inc(&live.schedules_done);
        // The other's task woke late: everything counted so far is in, yet
        // its last message is still to be written.
        assert!(!live.drained(2));
        Live::inc(&live.scheduled_msgs);
        Live::inc(&live.schedules_done);
        assert!(!live.drained(2), "written, not acked");
        Live::inc(&live.acked);
        Live::inc(&live.expected);
        assert!(!live.drained(2), "acked, not delivered");
        Live::inc(&live.deliveries);
        assert!(live.drained(2));
    }

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
        let mut agent = ConnResult { origin: 1, is_agent: true, watching: vec![0], ..Default::default() };
        cust.sent = vec![Sent { conv: 0, status: ACKED }, Sent { conv: 0, status: ACKED }];
        agent.sent = vec![Sent { conv: 0, status: ACKED }];
        cust.ledger.mark(0, 0);
        cust.ledger.mark(0, 1);
        cust.ledger.mark(1, 0);
        agent.ledger.mark(0, 0);
        agent.ledger.mark(1, 0);
        let d = reconcile(&[cust, agent]);
        assert_eq!(d.expected, 6);
        assert_eq!((d.expected_at_agents, d.delivered_at_agents), (3, 2));
        assert_eq!(d.lost, 1);
        assert_eq!(d.unexpected, 0);
        assert_eq!(d.complete_messages, 2);
    }

    /// The relay mix's shape: customers send, both agents watch every
    /// conversation and send nothing. Each message is owed to its customer's
    /// echo and to both agents; a miss, a second copy or a reordering at one
    /// agent is found there.
    #[test]
    fn reconcile_relay_shape() {
        let mut c0 = ConnResult { origin: 0, ..Default::default() };
        let mut c1 = ConnResult { origin: 1, ..Default::default() };
        let mut a2 = ConnResult { origin: 2, is_agent: true, watching: vec![0, 1], ..Default::default() };
        let mut a3 = ConnResult { origin: 3, is_agent: true, watching: vec![1, 0], ..Default::default() };
        c0.sent = vec![Sent { conv: 0, status: ACKED }; 3];
        c1.sent = vec![Sent { conv: 1, status: ACKED }; 2];
        for k in 0..3 {
            c0.ledger.mark(0, k);
            a2.ledger.mark(0, k);
        }
        c1.ledger.mark(1, 0);
        c1.ledger.mark(1, 1);
        a2.ledger.mark(1, 0);
        a2.ledger.mark(1, 1);
        // Agent 3: c0's messages 0 and 2 then 1 (out of order), c1's 0 twice, c1's 1 missing.
        a3.ledger.mark(0, 0);
        a3.ledger.mark(0, 2);
        a3.ledger.mark(0, 1);
        a3.ledger.mark(1, 0);
        a3.ledger.mark(1, 0);
        let d = reconcile(&[c0, c1, a2, a3]);
        assert_eq!((d.sent, d.acked), (5, 5));
        assert_eq!((d.expected, d.expected_at_agents), (15, 10));
        assert_eq!((d.delivered, d.delivered_at_agents), (14, 9));
        assert_eq!((d.lost, d.duplicated, d.out_of_order, d.unexpected), (1, 1, 1, 0));
        assert_eq!(d.complete_messages, 4);
        assert_eq!(d.lost_examples, vec!["c1/1 of 2 -> a3".to_string()]);
    }

    /// Conversation 1's messages are meant for its customer and for the agents
    /// watching it only: not for an agent watching conversation 0, not for customer 0.
    #[test]
    fn reconcile_follows_watches() {
        // Customers 0 and 1 (origins 0, 1); agent 2 watches conversation 0, agent 3 watches 1.
        let mut c0 = ConnResult { origin: 0, ..Default::default() };
        let mut c1 = ConnResult { origin: 1, ..Default::default() };
        let mut a2 = ConnResult { origin: 2, is_agent: true, watching: vec![0], ..Default::default() };
        let mut a3 = ConnResult { origin: 3, is_agent: true, watching: vec![1], ..Default::default() };
        c1.sent = vec![Sent { conv: 1, status: ACKED }];
        a3.sent = vec![Sent { conv: 1, status: ACKED }, Sent { conv: 1, status: FAILED }];
        c1.ledger.mark(1, 0);
        c1.ledger.mark(3, 0);
        a3.ledger.mark(1, 0);
        // Agent 3 misses its own reply; agent 2 gets conversation 1's message it does not watch.
        a2.ledger.mark(1, 0);
        c0.sent = vec![Sent { conv: 0, status: ACKED }];
        c0.ledger.mark(0, 0);
        let d = reconcile(&[c0, c1, a2, a3]);
        // c0's message: c0 + a2 (not received by a2); c1's: c1 + a3; a3's: c1 + a3. The refused one: none.
        assert_eq!((d.sent, d.acked, d.failed), (4, 3, 1));
        assert_eq!(d.expected, 6);
        assert_eq!(d.expected_at_agents, 3);
        assert_eq!(d.delivered, 4);
        assert_eq!(d.delivered_at_agents, 1);
        assert_eq!(d.lost, 2);
        assert_eq!(d.unexpected, 1);
        assert_eq!(d.complete_messages, 1);
    }
}

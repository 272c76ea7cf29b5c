//! Per-identity limits on this node: how many sockets one customer or agent
//! holds, and one send budget shared by all of them (a token bucket), so that
//! N sockets of one token do not multiply its send rate by N. The socket's
//! own bucket stays (it bounds one socket); this one bounds the identity.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use dashmap::DashMap;

/// Token bucket.
#[derive(Debug)]
pub struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self { tokens: burst, rate, burst, last: Instant::now() }
    }

    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Entry {
    sockets: usize,
    sends: Arc<Mutex<Bucket>>,
}

/// The identities holding sockets on this node.
#[derive(Default, Clone)]
pub struct Identities {
    map: Arc<DashMap<String, Entry>>,
}

/// One admitted socket of an identity: its share of the identity's send
/// budget; dropping it gives the socket's slot back.
pub struct Slot {
    map: Arc<DashMap<String, Entry>>,
    key: String,
    sends: Arc<Mutex<Bucket>>,
}

impl Identities {
    /// Admits one more socket of `key` unless it already holds `max`. The
    /// identity's send bucket (`rate` per second, bursts of twice that) is
    /// created with its first socket and lives while it has one.
    pub fn admit(&self, key: String, max: usize, rate: u32) -> Option<Slot> {
        let mut e = self.map.entry(key.clone()).or_insert_with(|| {
            let rate = rate.max(1) as f64;
            Entry { sockets: 0, sends: Arc::new(Mutex::new(Bucket::new(rate, rate * 2.0))) }
        });
        if e.sockets >= max {
            let empty = e.sockets == 0;
            drop(e);
            if empty {
                self.map.remove_if(&key, |_, e| e.sockets == 0);
            }
            return None;
        }
        e.sockets += 1;
        let sends = e.sends.clone();
        drop(e);
        Some(Slot { map: self.map.clone(), key, sends })
    }

    /// Sockets `key` holds on this node.
    pub fn sockets(&self, key: &str) -> usize {
        self.map.get(key).map(|e| e.sockets).unwrap_or(0)
    }
}

impl Slot {
    /// Takes one send from the identity's budget.
    pub fn take_send(&self) -> bool {
        self.sends.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(mut e) = self.map.get_mut(&self.key) {
            e.sockets = e.sockets.saturating_sub(1);
        }
        self.map.remove_if(&self.key, |_, e| e.sockets == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_sockets_and_frees_slots_on_drop() {
        let ids = Identities::default();
        let a = ids.admit("c:1".into(), 2, 10).unwrap();
        let b = ids.admit("c:1".into(), 2, 10).unwrap();
        assert!(ids.admit("c:1".into(), 2, 10).is_none());
        assert!(ids.admit("c:2".into(), 2, 10).is_some());
        drop(a);
        let c = ids.admit("c:1".into(), 2, 10).unwrap();
        drop((b, c));
        assert_eq!(ids.sockets("c:1"), 0);
        assert!(ids.map.is_empty());
    }

    #[test]
    fn sockets_of_one_identity_share_one_budget() {
        let ids = Identities::default();
        let a = ids.admit("c:1".into(), 5, 5).unwrap();
        let b = ids.admit("c:1".into(), 5, 5).unwrap();
        // Burst of 2x the rate, whichever socket takes it.
        let n = (0..20).filter(|i| if i % 2 == 0 { a.take_send() } else { b.take_send() }).count();
        assert_eq!(n, 10);
    }
}

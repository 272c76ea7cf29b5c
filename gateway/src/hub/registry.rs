//! Which sockets this node holds: agents in one sharded map, customers by
//! conversation in another (dashmap shards; no guard is held across `.await`).

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use super::ConnHandle;

#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    /// Sockets admitted (upgrade accepted, not yet closed), for the node cap.
    admitted: std::sync::atomic::AtomicUsize,
    /// Open sockets per client address.
    per_ip: DashMap<std::net::IpAddr, usize>,
    /// New sockets per client address in the current one-second window: (window, count).
    ip_rate: DashMap<std::net::IpAddr, (u64, u32)>,
    agents: DashMap<u64, ConnHandle>,
    customers: DashMap<String, Vec<ConnHandle>>,
    /// Agent sockets by the conversations they watch.
    watchers: DashMap<String, Vec<ConnHandle>>,
    /// Sockets and the shared send budget per identity (admission caps).
    pub identities: super::limits::Identities,
}

impl Registry {
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn add_agent(&self, h: ConnHandle) {
        self.agents.insert(h.id, h);
        metrics::gauge!(crate::metrics::CONNECTIONS, "kind" => "agent").increment(1.0);
    }

    pub fn remove_agent(&self, id: u64) {
        if self.agents.remove(&id).is_some() {
            metrics::gauge!(crate::metrics::CONNECTIONS, "kind" => "agent").decrement(1.0);
        }
    }

    /// Returns how many sockets this customer now has on this node.
    pub fn add_customer(&self, conv: &str, h: ConnHandle) -> usize {
        metrics::gauge!(crate::metrics::CONNECTIONS, "kind" => "customer").increment(1.0);
        let mut e = self.customers.entry(conv.to_string()).or_default();
        e.push(h);
        e.len()
    }

    /// Returns how many sockets this customer still has on this node.
    pub fn remove_customer(&self, conv: &str, id: u64) -> usize {
        let mut left = 0;
        let mut removed = false;
        if let Some(mut e) = self.customers.get_mut(conv) {
            let before = e.len();
            e.retain(|h| h.id != id);
            removed = e.len() < before;
            left = e.len();
        }
        if removed {
            metrics::gauge!(crate::metrics::CONNECTIONS, "kind" => "customer").decrement(1.0);
        }
        if left == 0 {
            self.customers.remove_if(conv, |_, v| v.is_empty());
        }
        left
    }

    /// An agent socket starts watching a conversation (idempotent).
    /// Whether a socket of the conversation's customer is on this node.
    pub fn has_customer(&self, conv: &str) -> bool {
        self.customers.get(conv).is_some_and(|v| !v.is_empty())
    }

    /// Whether an agent socket on this node watches the conversation.
    pub fn is_watched(&self, conv: &str) -> bool {
        self.watchers.get(conv).is_some_and(|v| !v.is_empty())
    }

    pub fn watch(&self, conv: &str, h: &ConnHandle) {
        let mut e = self.watchers.entry(conv.to_string()).or_default();
        if !e.iter().any(|x| x.id == h.id) {
            e.push(h.clone());
        }
    }

    /// An agent socket stops watching a conversation.
    pub fn unwatch(&self, conv: &str, id: u64) {
        if let Some(mut e) = self.watchers.get_mut(conv) {
            e.retain(|h| h.id != id);
        }
        self.watchers.remove_if(conv, |_, v| v.is_empty());
    }

    /// Calls `f` for every agent socket watching a conversation.
    pub fn for_watchers(&self, conv: &str, mut f: impl FnMut(&ConnHandle)) {
        if let Some(v) = self.watchers.get(conv) {
            for h in v.iter() {
                f(h);
            }
        }
    }

    /// Admits a new socket from `ip`: under both the open-socket cap and the
    /// connect rate (a window of one second, bursts of 5x the rate). On
    /// success the socket counts until [`Registry::release_ip`].
    pub fn admit_ip(&self, ip: std::net::IpAddr, max_open: usize, rate: u32, max_node: usize) -> Result<(), &'static str> {
        // Counted at admission, atomically: counting registered sockets let a
        // burst of upgrades past the cap before any of them registered.
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= max_node {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err("node is full: connect to another");
        }
        let r = self.admit_ip_inner(ip, max_open, rate);
        if r.is_err() {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
        }
        r
    }

    fn admit_ip_inner(&self, ip: std::net::IpAddr, max_open: usize, rate: u32) -> Result<(), &'static str> {
        let now = (schema::now_ms() / 1000) as u64;
        {
            if self.ip_rate.len() > 100_000 {
                self.ip_rate.retain(|_, (w, _)| *w + 5 >= now);
            }
            let mut e = self.ip_rate.entry(ip).or_insert((now, 0));
            let (w, n) = *e;
            // Tokens refill by `rate` per elapsed second, capped at the burst.
            let burst = rate.saturating_mul(5).max(1);
            let refilled = n.saturating_sub(rate.saturating_mul(now.saturating_sub(w) as u32));
            if refilled >= burst {
                *e = (now, refilled);
                return Err("too many new connections from your address: slow down");
            }
            *e = (now, refilled + 1);
        }
        let mut open = self.per_ip.entry(ip).or_insert(0);
        if *open >= max_open {
            return Err("too many open connections from your address");
        }
        *open += 1;
        Ok(())
    }

    pub fn release_ip(&self, ip: std::net::IpAddr) {
        self.admitted.fetch_sub(1, Ordering::SeqCst);
        if let Some(mut n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
        }
        self.per_ip.remove_if(&ip, |_, n| *n == 0);
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    pub fn total(&self) -> usize {
        self.agents.len() + self.customers.iter().map(|e| e.len()).sum::<usize>()
    }

    /// Calls `f` for every agent socket.
    pub fn for_agents(&self, mut f: impl FnMut(&ConnHandle)) {
        for e in self.agents.iter() {
            f(e.value());
        }
    }

    /// Calls `f` for every socket of one customer.
    pub fn for_customer(&self, conv: &str, mut f: impl FnMut(&ConnHandle)) {
        if let Some(v) = self.customers.get(conv) {
            for h in v.iter() {
                f(h);
            }
        }
    }

    /// Every socket (for shutdown).
    pub fn all(&self) -> Vec<ConnHandle> {
        let mut v: Vec<ConnHandle> = self.agents.iter().map(|e| e.value().clone()).collect();
        for e in self.customers.iter() {
            v.extend(e.value().iter().cloned());
        }
        v
    }
}

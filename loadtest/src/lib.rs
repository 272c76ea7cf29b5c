//! The load tool: open-loop chat traffic against our gateway or the
//! Socket.IO peer, with the figures the benchmarks quote.
//!
//! Module map:
//! - [`proto`]: the two wire dialects (our JSON frames; Engine.IO v4 /
//!   Socket.IO v5 packets) behind one encode/scan interface.
//! - [`client`]: one WebSocket connection (optionally from a chosen
//!   loopback source address) and its open-loop action schedule.
//! - [`stats`]: latency histograms, counters, and the delivery ledger that
//!   finds lost, duplicated and out-of-order messages.
//! - [`procstat`]: CPU seconds and resident memory of processes from `/proc`.
//! - [`scenario`]: the phases: a mixed-traffic run, the rate ramp, the soak,
//!   and the idle-connection ramp (spread over child processes).
//! - [`http`]: the agents' REST part (login, chat list, history) driven by goose.
//! - [`seed`]: the chat-list benchmark (100,000 rows seeded into Redis).
//! - [`echo`]: the bare WebSocket echo ceiling (client side; the server is
//!   the `ws-echo` binary).

pub mod client;
pub mod echo;
pub mod http;
pub mod procstat;
pub mod proto;
pub mod scenario;
pub mod seed;
pub mod stats;

//! The gateway: accepts sockets and REST calls, validates, sequences and relays.
//!
//! Module map (reads like the architecture diagram):
//! - [`config`]: settings from flags and environment.
//! - [`server`]: the hyper accept loop, routing, static files, graceful shutdown.
//! - [`api`]: REST handlers (`/api/*`, health, metrics).
//! - [`auth`]: agent sessions, customer tokens (HMAC), single-use ws tickets.
//! - [`connection`]: one socket's read task and write task (outbound queue,
//!   resume, gap filling).
//! - [`registry`]: which sockets this node holds, sharded maps.
//! - [`nodes`]: heartbeats, and cleaning up after a node that stopped.
//! - [`handlers`]: one function per client frame type.
//! - [`relay`]: Redis in and out: scripts, log shards, node inboxes, the staff stream.
//! - [`loyalty`]: the customer panel's REST (vouchers, orders, transactions)
//!   and the points actions, executed by a worker over a request/reply.
//! - [`orders`]: order events from the order system and the order cards.
//! - [`seed`]: demo data for dev mode.
//! - [`state`]: the shared application state.
//! - [`error`]: the one place errors become client replies.

pub mod api;
pub mod auth;
pub mod broker;
pub mod config;
pub mod connection;
pub mod error;
pub mod handlers;
pub mod ids;
pub mod loyalty;
pub mod metrics;
pub mod nodes;
pub mod orders;
pub mod registry;
pub mod relay;
pub mod seed;
pub mod server;
pub mod state;
pub mod wbuf;

pub use config::Config;
pub use server::run;

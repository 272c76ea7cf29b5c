//! The gateway: accepts sockets and REST calls, validates, sequences and relays.
//!
//! Module map, lowest layer first; a module uses only those above it in
//! this list (`gateway/tests/layers.rs` checks there is no import circle):
//! - base: [`config`] (settings), [`error`] (the one place errors become
//!   client replies), [`metrics`], [`identity`] (who is calling, what they
//!   may touch), [`ids`] (random tokens, stable UUIDs).
//! - [`broker`]: the Redis boundary: the Lua scripts (`broker/lua/*.lua`),
//!   their typed replies, the meta value, publishing, replay reads.
//! - [`hub`]: the sockets this node holds (registry, `ConnHandle`, `Out`,
//!   close codes).
//! - [`state`]: the shared application state.
//! - [`domain`]: what the product does: messages, receipts, conversations,
//!   points, orders and their cards, attachments (uploads, claims, sweep).
//! - [`auth`]: agent sessions, customer tokens (HMAC), single-use ws tickets.
//! - [`node`]: this node among the others: inbox loop and delivery,
//!   presence, watches, liveness (beat, reap, fence).
//! - [`cmd`]: one file per client frame (send, edit, react, receipts,
//!   typing, watch, resume, ping).
//! - [`ws`]: upgrade and admission, a socket's reader (RFC 6455) and
//!   writer (ordering, replay, gap fill).
//! - [`http`]: the route table and one module per REST resource, health,
//!   the console.
//! - [`dev`]: demo data for dev mode.
//! - [`server`]: builds the state, starts the loops, accepts, shuts down.

pub mod config;
pub mod error;
pub mod identity;
pub mod ids;
pub mod metrics;

pub mod broker;
pub mod hub;
pub mod state;

pub mod domain;

pub mod auth;
pub mod node;

pub mod cmd;
pub mod ws;

pub mod http;

pub mod dev;
pub mod server;

pub use config::Config;
pub use server::run;

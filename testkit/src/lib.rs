//! The one way to start the stack in tests and scripts: real gateway and
//! worker processes on ephemeral ports, against the real Redis (a key prefix
//! per stack) and a fresh SQLite file or PostgreSQL database per stack, all
//! removed again when the stack is dropped, so tests run in parallel.
//!
//! - [`bins`]: where the gateway and worker binaries are (built when missing).
//! - [`db`]: a fresh database per test ([`Database`]) and its cleanup.
//! - [`keys`]: the Redis key prefix of a test ([`KeyPrefix`]) and its cleanup.
//! - [`process`]: one spawned process ([`Proc`]): ready line, log file, signals.
//! - [`stack`]: [`Stack`], N gateways and M workers sharing prefix and database.
//! - [`client`]: the WebSocket [`Client`] tests drive the gateway with.
//!
//! The `testkit` binary (`src/main.rs`) wraps [`Stack`] for what is not Rust:
//! `web/e2e/harness.mjs` and `scripts/bench-stack.sh`.

pub mod bins;
pub mod client;
pub mod db;
pub mod keys;
pub mod process;
pub mod stack;

pub use bins::bin;
pub use client::{is_msg, uuid, Client};
pub use db::{create_pg_db, drop_pg_db, pg_admin_url, Database, Db};
pub use keys::{drop_keys, redis_url, KeyPrefix};
pub use process::{spawn, Proc};
pub use stack::{Stack, LOAD_ENV, TEST_ENV};

/// The local Redis the tests share (each under its own key prefix).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The local PostgreSQL's admin database (trust auth); see [`pg_admin_url`].
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

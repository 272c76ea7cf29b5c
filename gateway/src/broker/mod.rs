//! The Redis boundary of a conversation's events: the Lua script set
//! ([`scripts`], one `.lua` file each under `lua/`, run through the one
//! runner of `redis-conn`), their typed replies ([`replies`]), the message
//! meta value ([`meta`]), the frame placeholders readers fill
//! ([`template`]), publishing to the log shards, conversation channels and
//! the staff stream ([`publish`]), and replay range reads ([`replay`]).
//!
//! It takes explicit parts ([`Broker`]: the connection, the key layout, the
//! scripts), never the application state, so every layer above can use it.

pub mod meta;
pub mod publish;
pub mod replay;
pub mod replies;
pub mod scripts;
pub mod template;

use std::time::Instant;

use redis::FromRedisValue;
use redis_conn::{Call, LuaScript, RedisConn};
use schema::keys::Keys;

use crate::error::GatewayError;

pub use publish::Publish;
pub use scripts::Scripts;

/// What the broker needs to talk to Redis: borrowed from the application state.
#[derive(Clone, Copy)]
pub struct Broker<'a> {
    pub redis: &'a RedisConn,
    pub keys: &'a Keys,
    pub scripts: &'a Scripts,
    /// Number of log shards (`CHAT_LOG_SHARDS`).
    pub log_shards: u32,
}

impl Broker<'_> {
    /// A clone of the shared multiplexed connection.
    pub fn conn(&self) -> RedisConn {
        self.redis.clone()
    }

    /// Runs one of the [`Scripts`] (on the slot of its keys) and parses its reply.
    pub async fn run<T: FromRedisValue>(&self, script: &LuaScript, call: &Call) -> Result<T, GatewayError> {
        let started = Instant::now();
        let mut conn = self.conn();
        let r = script.run(&mut conn, call).await?;
        metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "script").record(started.elapsed().as_secs_f64());
        Ok(r)
    }
}

//! What a worker needs to run. Filled by `main.rs` from flags and the
//! environment; tests build it directly and never touch the process environment.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Config {
    /// One URL, or comma-separated seed nodes of a Redis Cluster.
    pub redis_url: String,
    /// Treat `redis_url` as a Redis Cluster (implied by several URLs).
    pub redis_cluster: bool,
    /// `sqlite://...` or `postgres://...` (see `store::Store::connect`).
    pub database_url: String,
    /// Prefix of every Redis key (`schema::keys::Keys`).
    pub key_prefix: String,
    /// Number of log shards (`keys.log(0..shards)`); must match the gateways'.
    pub shards: u32,
    /// This worker's consumer name in the group; unique per live process.
    pub worker_id: String,
    /// Where `/metrics` is served; `None` serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// Pending entries idle this long belong to a dead consumer and are claimed.
    pub claim_idle: Duration,
    /// How often to look for such entries (and refresh the pending gauge).
    pub claim_interval: Duration,
    /// `COUNT` of one `XREADGROUP` (per shard) and of one `XAUTOCLAIM`.
    pub batch_size: usize,
    /// `BLOCK` of one `XREADGROUP`.
    pub block: Duration,
    /// After a batch smaller than `batch_size`, wait this long before the next
    /// read so that entries gather: fewer, larger batches (one SQL transaction,
    /// one row script per conversation, one ack pipeline each). Delays history
    /// and chat-list rows by at most this much; live delivery does not wait
    /// for the worker.
    pub linger: Duration,
    /// External loyalty service (`CHAT_LOYALTY_URL`); `None`: the SQL store.
    pub loyalty_url: Option<String>,
    /// Bearer token for the loyalty service.
    pub loyalty_token: Option<String>,
    /// Per call to the loyalty service (under the gateway's wait).
    pub loyalty_timeout: Duration,
}

impl Config {
    /// Defaults for everything but where Redis and the database are.
    pub fn new(redis_url: impl Into<String>, database_url: impl Into<String>) -> Config {
        Config {
            redis_url: redis_url.into(),
            redis_cluster: false,
            database_url: database_url.into(),
            key_prefix: "chat:".into(),
            shards: 4,
            worker_id: random_worker_id(),
            metrics_addr: None,
            claim_idle: Duration::from_millis(30_000),
            claim_interval: Duration::from_secs(5),
            batch_size: 512,
            block: Duration::from_millis(1000),
            linger: Duration::from_millis(100),
            loyalty_url: None,
            loyalty_token: None,
            loyalty_timeout: Duration::from_secs(3),
        }
    }
}

/// `w-` and 12 random hex digits.
pub fn random_worker_id() -> String {
    format!("w-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

//! Shared application state: one `Arc<State>` per process.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use schema::keys::Keys;
use store::Store;
use tokio::sync::watch;

use crate::config::Config;
use redis_conn::{RedisConn, RedisTarget};
use crate::hub::Registry;
use crate::broker::{Broker, Scripts};

pub struct State {
    pub cfg: Config,
    pub keys: Keys,
    /// This node's id; its inbox is `keys.inbox(node)`.
    pub node: String,
    pub redis: RedisConn,
    pub redis_target: RedisTarget,
    pub store: Store,
    pub registry: Registry,
    pub scripts: Scripts,
    pub metrics: PrometheusHandle,
    /// Flips to true once on SIGTERM/SIGINT.
    pub shutdown: watch::Receiver<bool>,
    pub customer_secret: Vec<u8>,
    /// Points ledger, vouchers and orders (SQL or the external service).
    pub loyalty: store::loyalty::SharedLoyalty,
    /// Per conversation, the staff `delivered` position this node has
    /// already recorded in Redis (a lower bound: read state only grows).
    /// Every agent console reports delivery of every new customer message
    /// it sees in the chat list; the first report per node goes to Redis,
    /// the others are answered here.
    pub staff_delivered: dashmap::DashMap<String, u64>,
    /// True while this node, declared dead while alive, closes its sockets
    /// and rejoins: new sockets are refused.
    pub fenced: std::sync::atomic::AtomicBool,
    /// This node's subscriptions to conversation channels.
    pub subs: crate::hub::subs::Subs,
    /// Chat-list rows waiting for this node's agent sockets (coalesced).
    pub rows: crate::hub::rows::RowBoard,
    /// False in dev mode until the demo data is seeded (the demo agent's
    /// login works): `/readyz` waits for it.
    pub seeded: std::sync::atomic::AtomicBool,
    /// Uploaded files (local directory or S3; `CHAT_UPLOAD_URL`).
    pub blobs: blobs::Blobs,
    /// Key of the signed download links (derived from the customer secret,
    /// the same on every gateway).
    pub link_key: Vec<u8>,
    /// Image decodes at once (each may take tens of MiB while it runs).
    pub image_slots: tokio::sync::Semaphore,
}

pub type AppState = Arc<State>;

impl State {
    pub fn redis(&self) -> RedisConn {
        self.redis.clone()
    }

    /// The Redis boundary, with the parts it needs.
    pub fn broker(&self) -> Broker<'_> {
        Broker { redis: &self.redis, keys: &self.keys, scripts: &self.scripts, log_shards: self.cfg.log_shards }
    }
}

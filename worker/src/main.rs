//! The worker binary: flags/environment -> `worker::Config`, tracing, signals,
//! then `worker::run` until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "worker", about = "Persists the chat log to the SQL store and maintains the Redis chat list")]
struct Args {
    /// One URL, or comma-separated seed nodes of a Redis Cluster.
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Treat REDIS_URL as a Redis Cluster (implied by several comma-separated URLs).
    #[arg(long, env = "CHAT_REDIS_CLUSTER", default_value = "false", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    redis_cluster: bool,
    /// `sqlite://path` or `postgres://...`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/chat.db")]
    database_url: String,
    #[arg(long, env = "CHAT_KEY_PREFIX", default_value = "chat:")]
    key_prefix: String,
    /// Number of log shards; must match the gateways'.
    #[arg(long, env = "CHAT_LOG_SHARDS", default_value_t = 4)]
    log_shards: u32,
    /// Consumer name in the group (default: `w-` and random hex).
    #[arg(long, env = "WORKER_ID")]
    worker_id: Option<String>,
    /// Where `/metrics` is served (port 0 picks one).
    #[arg(long, env = "WORKER_METRICS_ADDR", default_value = "127.0.0.1:9091")]
    metrics_addr: SocketAddr,
    /// Pending entries idle this long are claimed from their (dead) consumer.
    #[arg(long, env = "CHAT_CLAIM_IDLE_MS", default_value_t = 30_000)]
    claim_idle_ms: u64,
    /// How often to look for idle entries to claim (and refresh the pending gauge).
    #[arg(long, env = "WORKER_CLAIM_INTERVAL_MS", default_value_t = 5_000)]
    claim_interval_ms: u64,
    /// Entries read per shard per `XREADGROUP`.
    #[arg(long, env = "WORKER_BATCH_SIZE", default_value_t = 512)]
    batch_size: usize,
    /// Wait after a partial batch so the next one gathers more entries (ms; 0 = none).
    #[arg(long, env = "WORKER_LINGER_MS", default_value_t = 100)]
    linger_ms: u64,
    /// External loyalty service base URL (docs/loyalty-service.md); unset: the SQL store.
    #[arg(long, env = "CHAT_LOYALTY_URL")]
    loyalty_url: Option<String>,
    /// Bearer token sent to the loyalty service.
    #[arg(long, env = "CHAT_LOYALTY_TOKEN")]
    loyalty_token: Option<String>,
    /// Timeout of one call to the loyalty service.
    #[arg(long, env = "CHAT_LOYALTY_TIMEOUT_MS", default_value_t = 3000)]
    loyalty_timeout_ms: u64,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: finishing the current batch");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        // stdout carries only the `worker metrics on ...` line that scripts read.
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mut cfg = worker::Config::new(args.redis_url, args.database_url);
    cfg.redis_cluster = args.redis_cluster;
    cfg.key_prefix = args.key_prefix;
    cfg.shards = args.log_shards;
    if let Some(id) = args.worker_id.filter(|s| !s.is_empty()) {
        cfg.worker_id = id;
    }
    cfg.metrics_addr = Some(args.metrics_addr);
    cfg.claim_idle = Duration::from_millis(args.claim_idle_ms);
    cfg.claim_interval = Duration::from_millis(args.claim_interval_ms.max(100));
    cfg.batch_size = args.batch_size;
    cfg.linger = Duration::from_millis(args.linger_ms);
    cfg.loyalty_url = args.loyalty_url.filter(|u| !u.is_empty());
    cfg.loyalty_token = args.loyalty_token.filter(|t| !t.is_empty());
    cfg.loyalty_timeout = Duration::from_millis(args.loyalty_timeout_ms);
    tracing::info!(worker = %cfg.worker_id, prefix = %cfg.key_prefix, shards = cfg.shards, "starting worker");
    worker::run(cfg, shutdown_signal()).await.context("worker failed")
}

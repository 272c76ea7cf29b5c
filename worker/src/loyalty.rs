//! Points actions: the worker side of the gateway's request/reply.
//!
//! The gateway validates a Give Points / Reset Balance call, `XADD`s a
//! [`LoyaltyRequest`] to `keys.loyalty()` and waits (`BLPOP`) on
//! `keys.loyalty_reply(id)`. Workers read that stream through the same
//! consumer group as the log, execute each request through the loyalty store
//! (idempotent by key, so a second execution returns the first outcome),
//! `LPUSH` the [`LoyaltyReply`] with a short TTL, then `XACK`+`XDEL`.
//!
//! A request carries the gateway's deadline. One still unprocessed after it
//! (a worker died holding it, or the backlog is long) is dropped without
//! being executed: the agent already got 503 and retries with the same key.

use std::time::{Duration, Instant};

use redis_conn::{RedisConn, RedisTarget};
use schema::envelope::{self, LoyaltyReply, LoyaltyRequest};
use schema::frames::ErrorCode;
use schema::keys::{Keys, WORKER_GROUP};
use schema::loyalty::PointsCommand;
use store::loyalty::{HttpConfig, LoyaltyError, SharedLoyalty};
use store::Store;
use tokio::sync::watch;

use crate::stream::{self, Entry};
use crate::{Config, WorkerError};

/// How long a reply waits for its gateway (which waits at most a few seconds).
pub const REPLY_TTL_SECS: i64 = 60;
/// Requests read (and executed concurrently) per step.
const BATCH: usize = 32;

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoyaltyReport {
    pub entries: usize,
    pub executed: usize,
    pub expired: usize,
    pub poison: usize,
}

/// The loyalty store this configuration names (HTTP when `loyalty_url` is set).
pub fn open_loyalty(cfg: &Config, store: &Store) -> Result<SharedLoyalty, WorkerError> {
    let http = cfg.loyalty_url.as_ref().filter(|u| !u.is_empty()).map(|url| HttpConfig {
        url: url.clone(),
        token: cfg.loyalty_token.clone(),
        timeout: cfg.loyalty_timeout,
    });
    store::loyalty::open(store, http).map_err(|e| WorkerError::Config(e.to_string()))
}

pub struct LoyaltyWorker {
    keys: Keys,
    consumer: String,
    loyalty: SharedLoyalty,
    redis: RedisConn,
    /// Only for `XREADGROUP ... BLOCK`.
    reader: RedisConn,
    streams: Vec<String>,
    block: Duration,
    claim_idle: Duration,
    read_pending: bool,
}

fn count(outcome: &'static str) {
    ::metrics::counter!(crate::metrics::LOYALTY_TOTAL, "outcome" => outcome).increment(1);
}

/// Runs one request through the store and says how it went.
pub async fn execute(loyalty: &SharedLoyalty, req: &LoyaltyRequest) -> LoyaltyReply {
    let cmd = PointsCommand {
        customer: req.customer.clone(),
        idempotency_key: req.idempotency_key.clone(),
        action: req.action.clone(),
        by: Some(req.by.clone()),
        ts: schema::now_ms(),
    };
    match loyalty.apply(&cmd).await {
        Ok(o) => {
            count(if o.replayed {
                "replayed"
            } else if o.noop {
                "noop"
            } else {
                "ok"
            });
            LoyaltyReply::Done(o)
        }
        Err(e) => {
            let (code, outcome) = match &e {
                LoyaltyError::Conflict(_) => (ErrorCode::Conflict, "conflict"),
                LoyaltyError::Invalid(_) => (ErrorCode::Invalid, "invalid"),
                LoyaltyError::NotFound(_) => (ErrorCode::NotFound, "not_found"),
                LoyaltyError::Unavailable(_) | LoyaltyError::Store(_) => (ErrorCode::Unavailable, "unavailable"),
            };
            count(outcome);
            let message = match &e {
                LoyaltyError::Conflict(m) | LoyaltyError::Invalid(m) | LoyaltyError::NotFound(m) => m.clone(),
                // Internal details stay in the log.
                LoyaltyError::Unavailable(_) | LoyaltyError::Store(_) => {
                    tracing::warn!(error = %e, customer = %req.customer, "points action failed");
                    "the loyalty service is unavailable: nothing was changed, retry with the same Idempotency-Key"
                        .to_string()
                }
            };
            LoyaltyReply::Failed { code, message }
        }
    }
}

impl LoyaltyWorker {
    pub async fn new(cfg: &Config, loyalty: SharedLoyalty) -> Result<LoyaltyWorker, WorkerError> {
        // One stream, so one key per command: the same on a Redis Cluster.
        let target = RedisTarget::new(&cfg.redis_url, cfg.redis_cluster)?;
        let mut redis = target.connect(Duration::from_secs(5)).await?;
        let reader = target.connect(cfg.block + Duration::from_secs(5)).await?;
        let keys = Keys::new(cfg.key_prefix.clone());
        let streams = vec![keys.loyalty()];
        stream::ensure_groups(&mut redis, &streams).await?;
        tracing::info!(backend = loyalty.backend(), "loyalty requests: ready");
        Ok(LoyaltyWorker {
            keys,
            consumer: cfg.worker_id.clone(),
            loyalty,
            redis,
            reader,
            streams,
            block: cfg.block,
            claim_idle: cfg.claim_idle,
            read_pending: true,
        })
    }

    /// Reads one batch (this consumer's pending entries first after a start
    /// or an error) and handles it.
    pub async fn process_once(&mut self) -> Result<LoyaltyReport, WorkerError> {
        let entries = self.read().await?;
        self.handle(entries).await
    }

    /// Reads one batch, blocking up to the configured time for new requests.
    pub async fn read(&mut self) -> Result<Vec<Entry>, WorkerError> {
        let block = self.block.as_millis() as u64;
        let mut entries = Vec::new();
        if self.read_pending {
            entries = stream::read_group(&mut self.reader, &self.streams, &self.consumer, BATCH, block, true).await?;
            if entries.is_empty() {
                self.read_pending = false;
            }
        }
        if entries.is_empty() {
            entries = stream::read_group(&mut self.reader, &self.streams, &self.consumer, BATCH, block, false).await?;
        }
        Ok(entries)
    }

    /// Takes over requests a dead worker held (they are past their deadline
    /// by then, so this mostly acks and drops them).
    pub async fn claim_once(&mut self) -> Result<LoyaltyReport, WorkerError> {
        let idle = self.claim_idle.as_millis() as u64;
        let (entries, _) =
            stream::autoclaim(&mut self.redis, &self.streams[0], &self.consumer, idle, "0-0", BATCH).await?;
        self.handle(entries).await
    }

    /// Executes, replies, acks. On error the entries stay pending and are
    /// re-read (their deadline decides whether they still run).
    pub async fn handle(&mut self, entries: Vec<Entry>) -> Result<LoyaltyReport, WorkerError> {
        let r = self.handle_inner(entries).await;
        if r.is_err() {
            self.read_pending = true;
        }
        r
    }

    async fn handle_inner(&mut self, entries: Vec<Entry>) -> Result<LoyaltyReport, WorkerError> {
        let mut report = LoyaltyReport { entries: entries.len(), ..LoyaltyReport::default() };
        if entries.is_empty() {
            return Ok(report);
        }
        let now = schema::now_ms();
        let mut todo = Vec::new();
        for e in &entries {
            match e.payload.as_deref().map(envelope::decode::<LoyaltyRequest>) {
                Some(Ok(req)) if req.deadline_ms < now => {
                    tracing::warn!(customer = %req.customer, "points request past its deadline: dropped unexecuted");
                    count("expired");
                    report.expired += 1;
                }
                Some(Ok(req)) => todo.push(req),
                Some(Err(err)) => {
                    tracing::warn!(id = %e.id, error = %err, "dropping undecodable loyalty request");
                    ::metrics::counter!(crate::metrics::POISON_TOTAL).increment(1);
                    report.poison += 1;
                }
                None => {}
            }
        }
        // Requests of one batch are independent (each is one transaction or
        // one call to the loyalty service): run them side by side.
        let replies = futures::future::join_all(todo.iter().map(|req| execute(&self.loyalty, req))).await;
        report.executed = replies.len();
        let mut pipe = redis::pipe();
        for (req, reply) in todo.iter().zip(replies.iter()) {
            let key = self.keys.loyalty_reply(&req.id);
            pipe.cmd("LPUSH").arg(&key).arg(envelope::encode(reply)).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(REPLY_TTL_SECS).ignore();
        }
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        pipe.cmd("XACK").arg(&self.streams[0]).arg(WORKER_GROUP).arg(&ids).ignore();
        pipe.cmd("XDEL").arg(&self.streams[0]).arg(&ids).ignore();
        pipe.query_async::<()>(&mut self.redis).await?;
        Ok(report)
    }
}

/// Serves points requests until `stop` flips (sharing the worker's store).
pub async fn run(cfg: Config, store: Store, mut stop: watch::Receiver<bool>) {
    let loyalty = match open_loyalty(&cfg, &store) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "loyalty store misconfigured: points actions will time out");
            return;
        }
    };
    let mut backoff = Duration::from_millis(100);
    let mut lw = loop {
        match LoyaltyWorker::new(&cfg, loyalty.clone()).await {
            Ok(w) => break w,
            Err(e) => {
                tracing::error!(error = %e, "loyalty requests: cannot start, retrying");
                if crate::pause(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    backoff = Duration::from_millis(100);
    let mut next_claim = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        if Instant::now() >= next_claim {
            if let Err(e) = lw.claim_once().await {
                tracing::warn!(error = %e, "loyalty requests: claiming failed");
            }
            next_claim = Instant::now() + cfg.claim_interval;
        }
        // Only the blocking read is interrupted by a stop: a batch being
        // executed is finished and answered first.
        let read = tokio::select! {
            r = lw.read() => r,
            _ = stop.changed() => break,
        };
        let r = match read {
            Ok(entries) => lw.handle(entries).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(_) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff, "loyalty requests: step failed");
                if crate::pause(&mut stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::info!("loyalty requests: stopped");
}

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

use std::time::Duration;

use redis_conn::RedisConn;
use schema::envelope::{self, LoyaltyReply, LoyaltyRequest};
use schema::frames::ErrorCode;
use schema::keys::Keys;
use schema::loyalty::PointsCommand;
use store::loyalty::{HttpConfig, LoyaltyError, SharedLoyalty};
use store::Store;
use tokio::sync::watch;

use crate::group::{self, Consumer, DeadReason, Group, Settings, Tail};
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

impl group::Report for LoyaltyReport {
    fn entries(&self) -> usize {
        self.entries
    }

    fn add(&mut self, o: &LoyaltyReport) {
        self.entries += o.entries;
        self.executed += o.executed;
        self.expired += o.expired;
        self.poison += o.poison;
    }
}

/// The loyalty stream's batch step: execute, then reply (sent with the acks).
pub struct LoyaltyStep {
    keys: Keys,
    loyalty: SharedLoyalty,
}

/// The loyalty stream's consumer.
pub type LoyaltyWorker = Consumer<LoyaltyStep>;

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
        let keys = Keys::new(cfg.key_prefix.clone());
        // Claimed requests are past their deadline by then (mostly acked and
        // dropped): one claim call per tick, and no linger (an agent waits).
        let settings = Settings { count: BATCH, claim_rounds: 1, linger: Duration::ZERO };
        let group = Group::connect(cfg, vec![keys.loyalty()], settings).await?;
        tracing::info!(backend = loyalty.backend(), "loyalty requests: ready");
        Ok(Consumer::from_parts(group, LoyaltyStep { keys, loyalty }))
    }
}

impl group::Step for LoyaltyStep {
    type Report = LoyaltyReport;
    const NAME: &'static str = "loyalty";

    /// Executes, queues the replies before the acks. On error the entries
    /// stay pending and are re-read (their deadline decides whether they still run).
    async fn process(&mut self, _redis: &mut RedisConn, tail: &mut Tail<'_>) -> Result<LoyaltyReport, WorkerError> {
        let entries = tail.entries();
        let mut report = LoyaltyReport { entries: entries.len(), ..LoyaltyReport::default() };
        let now = schema::now_ms();
        let mut todo = Vec::new();
        for e in entries {
            match e.payload.as_deref().map(envelope::decode::<LoyaltyRequest>) {
                Some(Ok(req)) if req.deadline_ms < now => {
                    tracing::warn!(customer = %req.customer, "points request past its deadline: dropped unexecuted");
                    count("expired");
                    report.expired += 1;
                }
                Some(Ok(req)) => todo.push(req),
                Some(Err(err)) => {
                    tracing::warn!(id = %e.id, error = %err, "undecodable loyalty request: dead-lettered");
                    ::metrics::counter!(crate::metrics::POISON_TOTAL).increment(1);
                    tail.dead_letter(e, DeadReason::of(&err), &err.to_string());
                    report.poison += 1;
                }
                None => {}
            }
        }
        // Requests of one batch are independent (each is one transaction or
        // one call to the loyalty service): run them side by side.
        let replies = futures::future::join_all(todo.iter().map(|req| execute(&self.loyalty, req))).await;
        report.executed = replies.len();
        for (req, reply) in todo.iter().zip(replies.iter()) {
            let key = self.keys.loyalty_reply(&req.id);
            tail.pipe().cmd("LPUSH").arg(&key).arg(envelope::encode(reply)).ignore();
            tail.pipe().cmd("EXPIRE").arg(&key).arg(REPLY_TTL_SECS).ignore();
        }
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
                if group::pause(&mut stop, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    group::run(&mut lw, &mut stop, cfg.claim_interval).await;
    tracing::info!("loyalty requests: stopped");
}

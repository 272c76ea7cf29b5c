//! The worker: the only writer of history. It drains the log shards through
//! the `workers` consumer group, persists each batch in one SQL transaction,
//! then updates the chat list in Redis and tells agents (the staff stream).
//!
//! - [`config`]: what a worker needs ([`Config`]); `main.rs` fills it from flags/env.
//! - [`group`]: one consumer-group member's loop (read, claim, step, ack,
//!   linger, backoff, stop), shared by the log and the loyalty stream.
//! - [`stream`]: the streams as a group member sees them (read, claim, parse).
//! - [`chatlist`]: the Redis chat-list rows and indexes, the staff relay, and
//!   [`rebuild_chat_list`] for when Redis lost its state.
//! - [`metrics`]: metric names and the `/metrics` endpoint.
//! - [`loyalty`]: points actions requested by the gateways, executed through
//!   the loyalty store and answered on a reply list.
//! - This file: [`LogStep`], the log's batch step; [`Worker`], the log's
//!   consumer, driven one step at a time by tests ([`Worker::process_once`],
//!   [`Worker::claim_once`]); and [`run`], the process with shutdown.
//!
//! A batch goes: read -> decode (undecodable entries, and envelope versions
//! this worker does not read, are poison: moved to the dead-letter stream
//! `keys.dead_letters()` and acked so they cannot block the group) -> persist
//! (one transaction; events the database refuses and messages whose position
//! a different message holds are dead-lettered too) -> only after the
//! commit: chat-list rows, then the dead letters and `XACK`+`XDEL`, then the
//! staff relay. Any failure before the ack leaves the entries
//! pending; the worker re-reads its own pending entries before new ones, and
//! entries of a dead worker are claimed by another after `claim_idle`. Every
//! write is idempotent, so processing an entry twice changes nothing.

pub mod chatlist;
pub mod config;
mod error;
pub mod group;
pub mod loyalty;
pub mod metrics;
pub mod stream;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use group::{pause, Consumer, DeadReason, Group, Settings, Tail};
use redis_conn::RedisConn;
use schema::envelope::{self, LogEvent};
use schema::keys::{Keys, WORKER_GROUP};
use store::{ConversationState, Store};
use tokio::sync::watch;

pub use chatlist::{rebuild_chat_list, ChatList};
pub use config::Config;
pub use error::WorkerError;
pub use stream::Entry;

/// What one step did (for tests and logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Stream entries handled (read or claimed), poison included.
    pub entries: usize,
    /// Events persisted.
    pub events: usize,
    /// Messages newly inserted in SQL.
    pub inserted: usize,
    /// Entries that could not be decoded or persisted (dead-lettered).
    pub poison: usize,
    /// Entries moved to the dead-letter stream: the poison, and messages
    /// whose position another message holds (`seq_conflict`).
    pub dead_letters: usize,
    /// Chat-list rows written to Redis.
    pub rows: usize,
    /// Relay entries added to the staff stream.
    pub relayed: usize,
}

impl group::Report for StepReport {
    fn entries(&self) -> usize {
        self.entries
    }

    fn add(&mut self, o: &StepReport) {
        self.entries += o.entries;
        self.events += o.events;
        self.inserted += o.inserted;
        self.poison += o.poison;
        self.dead_letters += o.dead_letters;
        self.rows += o.rows;
        self.relayed += o.relayed;
    }
}

fn event_kind(e: &LogEvent) -> &'static str {
    match e {
        LogEvent::Message { .. } => "message",
        LogEvent::Edit { .. } => "edit",
        LogEvent::Delete { .. } => "delete",
        LogEvent::React { .. } => "react",
        LogEvent::Read { .. } => "read",
        LogEvent::OrderCard { .. } => "order_card",
    }
}

fn count_error(stage: &'static str) {
    ::metrics::counter!(metrics::ERRORS_TOTAL, "stage" => stage).increment(1);
}

/// The log's batch step: decode, persist in one transaction, then the chat
/// list (rows, indexes) and the staff relay, sent with the acks.
pub struct LogStep {
    cfg: Config,
    store: Store,
    list: ChatList,
    /// `lua/raise.lua`: a conversation's counter up to the record's position.
    raise: redis_conn::LuaScript,
}

fn seq_of(e: &LogEvent) -> u64 {
    match e {
        LogEvent::Message { seq, .. } => *seq,
        _ => 0,
    }
}

/// The log's consumer: one per worker process.
pub type Worker = Consumer<LogStep>;

impl Worker {
    /// Connects to the database named in `cfg` and to Redis.
    pub async fn connect(cfg: Config) -> Result<Worker, WorkerError> {
        let store = Store::connect(&cfg.database_url).await?;
        Worker::with_store(cfg, store).await
    }

    /// Connects to Redis, creates the consumer group on every shard, and
    /// rebuilds the chat list when Redis has none (it lost its state).
    pub async fn with_store(cfg: Config, store: Store) -> Result<Worker, WorkerError> {
        if cfg.shards == 0 || cfg.batch_size == 0 {
            return Err(WorkerError::Config("shards and batch size must be at least 1".into()));
        }
        let keys = Keys::new(cfg.key_prefix.clone());
        let streams: Vec<String> = (0..cfg.shards).map(|s| keys.log(s)).collect();
        // Bounded per claim tick so a large backlog cannot starve new entries.
        let settings = Settings { count: cfg.batch_size, claim_rounds: 8, linger: cfg.linger };
        let group = Group::connect(&cfg, streams, settings).await?;
        let mut w = Consumer::from_parts(group, LogStep { list: ChatList::new(keys), cfg, store, raise: redis_conn::LuaScript::new("raise", include_str!("lua/raise.lua")) });
        w.ensure_chat_list().await?;
        tracing::info!(worker = %w.step.cfg.worker_id, shards = w.step.cfg.shards, "worker ready");
        Ok(w)
    }

    /// Rebuilds the chat list from SQL when Redis has none (it lost its
    /// state). Checked at start and on every claim tick, so a Redis restart
    /// under a running worker heals within `claim_interval`.
    pub async fn ensure_chat_list(&mut self) -> Result<(), WorkerError> {
        self.step.ensure_chat_list(&mut self.group.redis).await
    }

    pub fn store(&self) -> &Store {
        &self.step.store
    }

    pub fn keys(&self) -> &Keys {
        self.step.list.keys()
    }

    pub fn config(&self) -> &Config {
        &self.step.cfg
    }

    /// Sets `worker_stream_pending` to the group's pending count over all shards.
    pub async fn refresh_pending_gauge(&mut self) -> Result<u64, WorkerError> {
        refresh_pending_gauge(&mut self.group).await
    }
}

async fn refresh_pending_gauge(g: &mut Group) -> Result<u64, WorkerError> {
    let started = Instant::now();
    let mut total = 0;
    let mut len = 0;
    for s in &g.streams {
        total += stream::pending_count(&mut g.redis, s).await?;
        len += redis::cmd("XLEN").arg(s).query_async::<u64>(&mut g.redis).await?;
    }
    ::metrics::histogram!(metrics::REDIS_SECONDS, "op" => "pending").record(started.elapsed().as_secs_f64());
    ::metrics::gauge!(metrics::STREAM_PENDING, "group" => WORKER_GROUP).set(total as f64);
    // Acked entries are deleted, so whatever is in the shards and not
    // pending has not been delivered to the group yet: that is the lag.
    ::metrics::gauge!(metrics::STREAM_LAG, "group" => WORKER_GROUP).set(len.saturating_sub(total) as f64);
    Ok(total)
}

impl group::Step for LogStep {
    type Report = StepReport;
    const NAME: &'static str = "log";
    const ACK_OP: Option<&'static str> = Some("ack");

    async fn process(&mut self, redis: &mut RedisConn, tail: &mut Tail<'_>) -> Result<StepReport, WorkerError> {
        self.process_batch(redis, tail).await
    }

    fn count_error(&self, stage: &'static str) {
        count_error(stage);
    }

    async fn after_claim(&mut self, group: &mut Group) -> Result<(), WorkerError> {
        refresh_pending_gauge(group).await?;
        self.ensure_chat_list(&mut group.redis).await
    }
}

impl LogStep {
    async fn ensure_chat_list(&mut self, redis: &mut RedisConn) -> Result<(), WorkerError> {
        let exists: bool = redis::cmd("EXISTS").arg(self.list.keys().chats_all()).query_async(redis).await?;
        if !exists {
            let keys = self.list.keys().clone();
            rebuild_chat_list(&self.store, redis, &keys).await?;
        }
        Ok(())
    }

    async fn process_batch(&mut self, redis: &mut RedisConn, tail: &mut Tail<'_>) -> Result<StepReport, WorkerError> {
        let entries = tail.entries();
        let mut report = StepReport { entries: entries.len(), ..StepReport::default() };
        let mut events = Vec::with_capacity(entries.len());
        let mut origin = Vec::with_capacity(entries.len());
        for e in entries {
            match e.payload.as_deref().map(envelope::decode::<LogEvent>) {
                Some(Ok(mut ev)) => {
                    if let Some(n) = &e.numbered {
                        n.apply(&mut ev);
                    }
                    events.push(ev);
                    origin.push(e);
                }
                Some(Err(err)) => {
                    tracing::warn!(stream = %e.stream, id = %e.id, error = %err, "undecodable log entry: dead-lettered");
                    ::metrics::counter!(metrics::POISON_TOTAL).increment(1);
                    tail.dead_letter(e, DeadReason::of(&err), &err.to_string());
                    report.poison += 1;
                }
                None => {
                    // Deleted after delivery (a previous run acked it late, or
                    // an operator trimmed it): nothing left to process.
                    tracing::debug!(stream = %e.stream, id = %e.id, "pending entry without payload");
                }
            }
        }

        let (inserted, states, bad) = self.persist(&events).await?;
        for &(i, ref why) in &bad {
            let e = origin[i];
            tracing::warn!(stream = %e.stream, id = %e.id, error = %why, "log entry the database refuses: dead-lettered");
            ::metrics::counter!(metrics::POISON_TOTAL).increment(1);
            tail.dead_letter(e, DeadReason::Refused, why);
        }
        report.poison += bad.len();
        let refused = |i: usize| bad.iter().any(|(b, _)| *b == i);
        // A message whose position another message holds in the record was
        // not stored (inserts keep the first): the counter went back (a Redis
        // failover lost increments). Keep it where someone can look at it.
        // Only possible when fewer messages were inserted than the batch holds.
        let messages = events.iter().filter(|e| matches!(e, LogEvent::Message { .. })).count();
        let conflicts = if inserted < messages {
            self.store.seq_conflicts(&events).await.inspect_err(|_| count_error("persist"))?
        } else {
            Vec::new()
        };
        let conflicts: Vec<usize> = conflicts.into_iter().filter(|&i| !refused(i)).collect();
        for &i in &conflicts {
            let e = origin[i];
            tracing::error!(stream = %e.stream, id = %e.id, conversation = events[i].conversation(),
                "message position already holds a different message (counter went back?): dead-lettered");
            // The completed event (seq and profile included, which a message
            // the send script logged carries in fields beside its envelope),
            // so the dead letter alone is enough to recover the message.
            let kept = Entry { payload: Some(envelope::encode(&events[i])), ..e.clone() };
            tail.dead_letter(&kept, DeadReason::SeqConflict, &format!("position {} held by a different message", seq_of(&events[i])));
        }
        if !conflicts.is_empty() {
            self.raise_counters(redis, conflicts.iter().map(|&i| events[i].conversation())).await?;
        }
        report.dead_letters = report.poison + conflicts.len();
        report.inserted = inserted;
        report.events = events.len() - bad.len() - conflicts.len();
        for (i, ev) in events.iter().enumerate() {
            if !refused(i) && !conflicts.contains(&i) {
                ::metrics::counter!(metrics::EVENTS_TOTAL, "kind" => event_kind(ev)).increment(1);
            }
        }

        // Committed: now the chat list; the consumer sends the acks and the
        // staff relay that this adds to the tail.
        let (rows, relayed) = match self.publish(redis, tail, &states).await {
            Ok(r) => r,
            Err(e) => {
                count_error("redis");
                return Err(e);
            }
        };
        report.rows = rows;
        report.relayed = relayed;
        tracing::debug!(?report, "batch done");
        Ok(report)
    }

    /// After a `seq_conflict` the conversation's counter is behind the record
    /// (a failover promoted a replica that missed increments): every send
    /// would collide until it passes the record's last position. Raise it
    /// there (never lower: `lua/raise.lua`), so the next sends get fresh
    /// positions. The sends that collided meanwhile are in the dead letters.
    async fn raise_counters<'a>(&self, redis: &mut RedisConn, convs: impl Iterator<Item = &'a str>) -> Result<(), WorkerError> {
        let mut seen = std::collections::BTreeSet::new();
        for conv in convs.filter(|c| seen.insert(*c)) {
            let last = self.store.max_pos(conv).await?;
            let call = redis_conn::Call::new().key(self.list.keys().state(conv)).arg(last);
            let raised: i64 = self.raise.run(redis, &call).await?;
            if raised == 1 {
                ::metrics::counter!(metrics::COUNTERS_RAISED).increment(1);
                tracing::warn!(conversation = conv, to = last, "conversation counter was behind the record: raised");
            }
        }
        Ok(())
    }

    /// Persists `events`; returns messages inserted, the touched states, and
    /// the indexes of events the database refused (isolated one by one when
    /// the batch as a whole is refused, so one bad event cannot block a shard).
    async fn persist(&self, events: &[LogEvent]) -> Result<(usize, Vec<ConversationState>, Vec<(usize, String)>), WorkerError> {
        if events.is_empty() {
            return Ok((0, Vec::new(), Vec::new()));
        }
        ::metrics::histogram!(metrics::BATCH_SIZE).record(events.len() as f64);
        let started = Instant::now();
        let result = self.store.persist_with_states(events).await;
        ::metrics::histogram!(metrics::PERSIST_SECONDS).record(started.elapsed().as_secs_f64());
        match result {
            Ok((p, states)) => Ok((p.inserted, states, Vec::new())),
            Err(e) if e.is_data_error() => {
                tracing::warn!(error = %e, events = events.len(), "batch refused, persisting events one by one");
                count_error("persist");
                let mut inserted = 0;
                let mut latest: BTreeMap<String, ConversationState> = BTreeMap::new();
                let mut bad = Vec::new();
                for (i, ev) in events.iter().enumerate() {
                    match self.store.persist_with_states(std::slice::from_ref(ev)).await {
                        Ok((p, states)) => {
                            inserted += p.inserted;
                            // Later calls see earlier commits: their states win.
                            for s in states {
                                latest.insert(s.id.clone(), s);
                            }
                        }
                        Err(e) if e.is_data_error() => {
                            // A sender's retry later than Redis's dedupe
                            // window: the record has the message; no copy.
                            match self.store.stored_copy(ev).await {
                                Ok(Some(original)) => {
                                    ::metrics::counter!(metrics::LATE_DUPLICATES).increment(1);
                                    tracing::info!(conversation = ev.conversation(), original, seq = seq_of(ev),
                                        "late retry of a stored message: not stored twice");
                                    continue;
                                }
                                Ok(None) => {}
                                Err(e) => tracing::warn!(error = %e, "could not look for a stored copy"),
                            }
                            tracing::warn!(error = %e, kind = event_kind(ev), "event refused by the database");
                            bad.push((i, e.to_string()));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok((inserted, latest.into_values().collect(), bad))
            }
            Err(e) => {
                count_error("persist");
                Err(e.into())
            }
        }
    }

    /// Round trip 1: the row scripts. Then, into the tail (round trip 2, with
    /// the acks): the indexes, the acks and deletes, and the relays, in that order.
    async fn publish(&mut self, redis: &mut RedisConn, tail: &mut Tail<'_>, states: &[ConversationState]) -> Result<(usize, usize), WorkerError> {
        let started = Instant::now();
        let applied = self.list.write_rows(redis, states).await?;
        ::metrics::histogram!(metrics::REDIS_SECONDS, "op" => "rows").record(started.elapsed().as_secs_f64());
        self.list.push_indexes(tail.pipe(), &applied);
        tail.ack();
        let relayed = self.list.push_relays(tail.pipe(), &applied);
        Ok((applied.len(), relayed))
    }
}

/// Runs a worker until `shutdown` completes: serves `/metrics` (printing
/// `worker metrics on http://ADDR`), connects (retrying while Redis or the
/// database is down), then loops read -> process, claiming idle entries every
/// `cfg.claim_interval`. A shutdown interrupts only the blocking read: a batch
/// being processed is finished first.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), WorkerError> {
    let (stop_tx, mut stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let server = match cfg.metrics_addr {
        Some(addr) => {
            let (bound, task) = metrics::serve(addr).await?;
            println!("worker metrics on http://{bound}");
            Some(task)
        }
        None => {
            metrics::handle();
            None
        }
    };
    let result = run_loop(cfg, &mut stop).await;
    if let Some(task) = server {
        task.abort();
    }
    result
}

async fn run_loop(cfg: Config, stop: &mut watch::Receiver<bool>) -> Result<(), WorkerError> {
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut backoff = Duration::from_millis(100);
    let mut worker = loop {
        match Worker::connect(cfg.clone()).await {
            Ok(w) => break w,
            Err(e @ WorkerError::Config(_)) => return Err(e),
            // Wrong or missing credentials (or an ACL user without a right
            // the worker needs): no retry can fix that.
            Err(WorkerError::Redis(e)) if redis_conn::is_auth_error(&e) => {
                return Err(WorkerError::Config(format!("Redis refused the credentials of REDIS_URL ({}): {e}", redis_conn::redacted(&cfg.redis_url))))
            }
            Err(e) => {
                count_error("connect");
                tracing::error!(error = %e, "cannot start, retrying");
                if pause(stop, backoff).await {
                    return Ok(());
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    // Points requests run beside the log, on the same store.
    let loyalty_task = tokio::spawn(loyalty::run(cfg.clone(), worker.store().clone(), stop.clone()));
    group::run(&mut worker, stop, cfg.claim_interval).await;
    // The loyalty loop saw the same stop; let it answer what it is executing.
    if tokio::time::timeout(Duration::from_secs(10), loyalty_task).await.is_err() {
        tracing::warn!("loyalty requests did not stop in time");
    }
    tracing::info!("worker stopped");
    Ok(())
}

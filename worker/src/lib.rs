//! The worker: the only writer of history. It drains the log shards through
//! the `workers` consumer group, persists each batch in one SQL transaction,
//! then updates the chat list in Redis and tells agents (the staff stream).
//!
//! - [`config`]: what a worker needs ([`Config`]); `main.rs` fills it from flags/env.
//! - [`stream`]: the log shards as a group member sees them (read, claim, parse).
//! - [`chatlist`]: the Redis chat-list rows and indexes, the staff relay, and
//!   [`rebuild_chat_list`] for when Redis lost its state.
//! - [`metrics`]: metric names and the `/metrics` endpoint.
//! - [`loyalty`]: points actions requested by the gateways, executed through
//!   the loyalty store and answered on a reply list.
//! - This file: [`Worker`], one step at a time ([`Worker::process_once`],
//!   [`Worker::claim_once`]), and [`run`], the loop with shutdown.
//!
//! A batch goes: read -> decode (undecodable entries are poison: counted,
//! acked and deleted so they cannot block the group) -> persist (one
//! transaction) -> only after the commit: chat-list rows, then `XACK`+`XDEL`,
//! then the staff relay. Any failure before the ack leaves the entries
//! pending; the worker re-reads its own pending entries before new ones, and
//! entries of a dead worker are claimed by another after `claim_idle`. Every
//! write is idempotent, so processing an entry twice changes nothing.

pub mod chatlist;
pub mod config;
mod error;
pub mod loyalty;
pub mod metrics;
pub mod stream;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use redis_conn::{RedisConn, RedisTarget};
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
    /// Entries dropped as poison.
    pub poison: usize,
    /// Chat-list rows written to Redis.
    pub rows: usize,
    /// Relay entries added to the staff stream.
    pub relayed: usize,
}

impl StepReport {
    fn add(&mut self, o: &StepReport) {
        self.entries += o.entries;
        self.events += o.events;
        self.inserted += o.inserted;
        self.poison += o.poison;
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

/// One worker process's state: its store, its two Redis connections and
/// whether it owes a re-read of its own pending entries.
pub struct Worker {
    cfg: Config,
    store: Store,
    list: ChatList,
    /// Normal commands (pipelines, scripts, acks, claims).
    redis: RedisConn,
    /// Only for `XREADGROUP ... BLOCK`, which would stall a shared connection.
    reader: RedisConn,
    /// A Redis Cluster refuses `XREADGROUP` across slots: shards are read one by one.
    cluster: bool,
    /// Shard whose turn it is to block, in cluster mode.
    turn: usize,
    streams: Vec<String>,
    read_pending: bool,
}

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
        let target = RedisTarget::new(&cfg.redis_url, cfg.redis_cluster)?;
        // Every request has a deadline: a Redis that stops answering must not
        // hang the worker (the reconnecting manager alone can wait far longer).
        let mut redis = target.connect(Duration::from_secs(5)).await?;
        // The blocking read may legitimately take `block`; allow that plus slack.
        let reader = target.connect(cfg.block + Duration::from_secs(5)).await?;
        let cluster = target.is_cluster();
        let keys = Keys::new(cfg.key_prefix.clone());
        let streams: Vec<String> = (0..cfg.shards).map(|s| keys.log(s)).collect();
        stream::ensure_groups(&mut redis, &streams).await?;
        // Entries delivered to this consumer name before a restart are ours to finish.
        let mut w = Worker { list: ChatList::new(keys), cfg, store, redis, reader, cluster, turn: 0, streams, read_pending: true };
        w.ensure_chat_list().await?;
        tracing::info!(worker = %w.cfg.worker_id, shards = w.cfg.shards, "worker ready");
        Ok(w)
    }

    /// Rebuilds the chat list from SQL when Redis has none (it lost its
    /// state). Checked at start and on every claim tick, so a Redis restart
    /// under a running worker heals within `claim_interval`.
    pub async fn ensure_chat_list(&mut self) -> Result<(), WorkerError> {
        let exists: bool = redis::cmd("EXISTS").arg(self.keys().chats_all()).query_async(&mut self.redis).await?;
        if !exists {
            let keys = self.keys().clone();
            rebuild_chat_list(&self.store, &mut self.redis, &keys).await?;
        }
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn keys(&self) -> &Keys {
        self.list.keys()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Reads one batch: this consumer's own pending entries first when it
    /// owes them (after a start or an error), else new entries, blocking up
    /// to `cfg.block`.
    pub async fn read_batch(&mut self) -> Result<Vec<Entry>, WorkerError> {
        let r = self.read_batch_inner().await;
        if r.is_err() {
            count_error("read");
        }
        r
    }

    async fn read_batch_inner(&mut self) -> Result<Vec<Entry>, WorkerError> {
        let (id, count, block) = (&self.cfg.worker_id, self.cfg.batch_size, self.cfg.block.as_millis() as u64);
        if self.cluster {
            return self.read_batch_cluster().await;
        }
        if self.read_pending {
            let pending = stream::read_group(&mut self.reader, &self.streams, id, count, block, true).await?;
            if !pending.is_empty() {
                return Ok(pending);
            }
            self.read_pending = false;
        }
        stream::read_group(&mut self.reader, &self.streams, id, count, block, false).await
    }

    /// Cluster mode: one shard per `XREADGROUP` (shards live in different
    /// slots). Non-blocking over all shards; when all are empty, block briefly
    /// on one shard in turn.
    async fn read_batch_cluster(&mut self) -> Result<Vec<Entry>, WorkerError> {
        let (id, count) = (self.cfg.worker_id.clone(), self.cfg.batch_size);
        let mut out = Vec::new();
        for s in self.streams.clone() {
            let one = [s];
            if self.read_pending {
                out.extend(stream::read_group(&mut self.reader, &one, &id, count, 0, true).await?);
            } else {
                out.extend(stream::read_group(&mut self.reader, &one, &id, count, 1, false).await?);
            }
        }
        if self.read_pending && out.is_empty() {
            self.read_pending = false;
        }
        if out.is_empty() && !self.read_pending {
            self.turn = (self.turn + 1) % self.streams.len();
            let one = [self.streams[self.turn].clone()];
            let block = self.cfg.block.as_millis().min(50) as u64;
            out = stream::read_group(&mut self.reader, &one, &id, count, block, false).await?;
        }
        Ok(out)
    }

    /// One step: read a batch and process it.
    pub async fn process_once(&mut self) -> Result<StepReport, WorkerError> {
        let entries = self.read_batch().await?;
        self.handle(entries).await
    }

    /// Processes entries this consumer holds (read or claimed). On error
    /// nothing is acked and the entries stay pending for a retry.
    pub async fn handle(&mut self, entries: Vec<Entry>) -> Result<StepReport, WorkerError> {
        if entries.is_empty() {
            return Ok(StepReport::default());
        }
        let r = self.handle_inner(&entries).await;
        if r.is_err() {
            self.read_pending = true;
        }
        r
    }

    async fn handle_inner(&mut self, entries: &[Entry]) -> Result<StepReport, WorkerError> {
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
                    tracing::warn!(stream = %e.stream, id = %e.id, error = %err, "dropping undecodable log entry");
                    ::metrics::counter!(metrics::POISON_TOTAL).increment(1);
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
        for &i in &bad {
            let e = origin[i];
            tracing::warn!(stream = %e.stream, id = %e.id, "dropping log entry the database refuses");
        }
        report.poison += bad.len();
        report.inserted = inserted;
        report.events = events.len() - bad.len();
        for (i, ev) in events.iter().enumerate() {
            if !bad.contains(&i) {
                ::metrics::counter!(metrics::EVENTS_TOTAL, "kind" => event_kind(ev)).increment(1);
            }
        }

        // Committed: now the chat list, the acks and the staff relay.
        let r = self.publish(entries, &states).await;
        match r {
            Ok((rows, relayed)) => {
                report.rows = rows;
                report.relayed = relayed;
            }
            Err(e) => {
                count_error("redis");
                return Err(e);
            }
        }
        tracing::debug!(?report, "batch done");
        Ok(report)
    }

    /// Persists `events`; returns messages inserted, the touched states, and
    /// the indexes of events the database refused (isolated one by one when
    /// the batch as a whole is refused, so one bad event cannot block a shard).
    async fn persist(&self, events: &[LogEvent]) -> Result<(usize, Vec<ConversationState>, Vec<usize>), WorkerError> {
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
                            tracing::warn!(error = %e, kind = event_kind(ev), "event refused by the database");
                            bad.push(i);
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

    /// Two round trips: the row scripts (and the live staff nodes), then one
    /// pipeline with the indexes, the acks and deletes, and the relays, in
    /// that order.
    async fn publish(&mut self, entries: &[Entry], states: &[ConversationState]) -> Result<(usize, usize), WorkerError> {
        let started = Instant::now();
        let applied = self.list.write_rows(&mut self.redis, states).await?;
        ::metrics::histogram!(metrics::REDIS_SECONDS, "op" => "rows").record(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let mut pipe = redis::pipe();
        self.list.push_indexes(&mut pipe, &applied);
        let mut by_stream: HashMap<&str, Vec<&str>> = HashMap::new();
        for e in entries {
            by_stream.entry(e.stream.as_str()).or_default().push(e.id.as_str());
        }
        for (s, ids) in &by_stream {
            pipe.cmd("XACK").arg(*s).arg(WORKER_GROUP).arg(ids).ignore();
            // Acked entries are history in SQL now; deleting them keeps the
            // shard streams small without a MAXLEN that could drop unread ones.
            pipe.cmd("XDEL").arg(*s).arg(ids).ignore();
        }
        let relayed = self.list.push_relays(&mut pipe, &applied);
        pipe.query_async::<()>(&mut self.redis).await?;
        ::metrics::histogram!(metrics::REDIS_SECONDS, "op" => "ack").record(started.elapsed().as_secs_f64());
        Ok((applied.len(), relayed))
    }

    /// Claims and processes entries idle longer than `cfg.claim_idle` on
    /// every shard (a dead consumer's), then refreshes the pending gauge.
    pub async fn claim_once(&mut self) -> Result<StepReport, WorkerError> {
        let r = self.claim_inner().await;
        if r.is_err() {
            count_error("claim");
        }
        r
    }

    async fn claim_inner(&mut self) -> Result<StepReport, WorkerError> {
        // Bounded per call so a large backlog cannot starve new entries.
        const MAX_ROUNDS: usize = 8;
        let mut report = StepReport::default();
        let idle = self.cfg.claim_idle.as_millis() as u64;
        for s in self.streams.clone() {
            let mut cursor = String::from("0-0");
            for _ in 0..MAX_ROUNDS {
                let (entries, next) =
                    stream::autoclaim(&mut self.redis, &s, &self.cfg.worker_id, idle, &cursor, self.cfg.batch_size).await?;
                if !entries.is_empty() {
                    tracing::info!(stream = %s, entries = entries.len(), "claimed idle entries");
                    ::metrics::counter!(metrics::CLAIMED_TOTAL).increment(entries.len() as u64);
                    let r = self.handle(entries).await?;
                    report.add(&r);
                }
                if next == "0-0" {
                    break;
                }
                cursor = next;
            }
        }
        self.refresh_pending_gauge().await?;
        self.ensure_chat_list().await?;
        Ok(report)
    }

    /// Sets `worker_stream_pending` to the group's pending count over all shards.
    pub async fn refresh_pending_gauge(&mut self) -> Result<u64, WorkerError> {
        let started = Instant::now();
        let mut total = 0;
        let mut len = 0;
        for s in &self.streams {
            total += stream::pending_count(&mut self.redis, s).await?;
            len += redis::cmd("XLEN").arg(s).query_async::<u64>(&mut self.redis).await?;
        }
        ::metrics::histogram!(metrics::REDIS_SECONDS, "op" => "pending").record(started.elapsed().as_secs_f64());
        ::metrics::gauge!(metrics::STREAM_PENDING, "group" => WORKER_GROUP).set(total as f64);
        // Acked entries are deleted, so whatever is in the shards and not
        // pending has not been delivered to the group yet: that is the lag.
        ::metrics::gauge!(metrics::STREAM_LAG, "group" => WORKER_GROUP).set(len.saturating_sub(total) as f64);
        Ok(total)
    }
}

/// Sleeps `d` unless a stop comes first; returns true when stopping.
pub(crate) async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
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
    backoff = Duration::from_millis(100);
    let mut next_claim = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        if Instant::now() >= next_claim {
            if let Err(e) = worker.claim_once().await {
                tracing::warn!(error = %e, "claiming idle entries failed");
            }
            next_claim = Instant::now() + cfg.claim_interval;
        }
        let read = tokio::select! {
            r = worker.read_batch() => r,
            _ = stop.changed() => break,
        };
        let result = match read {
            Ok(entries) => worker.handle(entries).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(r) => {
                backoff = Duration::from_millis(100);
                // A partial batch: the log is drained, let the next one gather.
                if r.entries > 0 && r.entries < cfg.batch_size && !cfg.linger.is_zero() && pause(stop, cfg.linger).await {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?backoff, "batch failed; entries stay pending");
                if pause(stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    // The loyalty loop saw the same stop; let it answer what it is executing.
    if tokio::time::timeout(Duration::from_secs(10), loyalty_task).await.is_err() {
        tracing::warn!("loyalty requests did not stop in time");
    }
    tracing::info!("worker stopped");
    Ok(())
}

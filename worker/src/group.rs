//! One consumer-group member, whatever stream it reads: the loop the log
//! shards and the loyalty stream share.
//!
//! [`Consumer`] owns what every member of the `workers` group does: read
//! (its own pending entries first after a start or an error, then new ones,
//! blocking), claim entries a dead consumer left idle, hand a batch to the
//! [`Step`], then send the step's [`Tail`] with `XACK`+`XDEL` of the batch in
//! one pipeline. [`run`] adds the timing: a claim tick, a linger after a
//! partial batch, a backoff after an error, and a stop that interrupts only
//! the blocking read (a batch being processed is finished first).
//!
//! A [`Step`] is the part that differs (persist events, execute points
//! requests). It never acks: an error leaves the batch pending for a retry,
//! and [`Consumer::process_once`] lets tests drive one step at a time.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::Pipeline;
use redis_conn::{RedisConn, RedisTarget};
use schema::keys::{Keys, FIELD, WORKER_GROUP};
use tokio::sync::watch;

use crate::stream::{self, Entry};
use crate::{metrics, Config, WorkerError};

/// What a step reports (for tests, logs and the linger decision).
pub trait Report: Default + std::fmt::Debug + Send {
    /// Entries handled (read or claimed), poison included.
    fn entries(&self) -> usize;
    /// Adds another step's figures (claim rounds add up).
    fn add(&mut self, other: &Self);
}

/// The batch step of one stream's consumer.
pub trait Step: Send {
    type Report: Report;
    /// For logs.
    const NAME: &'static str;
    /// Records `REDIS_SECONDS{op}` around the tail's round trip when set.
    const ACK_OP: Option<&'static str> = None;

    /// Handles the entries `tail` holds. Commands that must go out with the
    /// acknowledgement go into `tail` (before [`Tail::ack`] if they must
    /// precede it); the consumer sends the tail once this returns `Ok`. An
    /// error leaves every entry pending.
    fn process(&mut self, redis: &mut RedisConn, tail: &mut Tail<'_>) -> impl Future<Output = Result<Self::Report, WorkerError>> + Send;

    /// Counts a failure of `stage` (read, redis, claim), if this consumer does.
    fn count_error(&self, _stage: &'static str) {}

    /// After each claim tick (gauges, self-healing).
    fn after_claim(&mut self, _group: &mut Group) -> impl Future<Output = Result<(), WorkerError>> + Send {
        async { Ok(()) }
    }
}

/// The group side of a consumer: connections, streams, read state.
pub struct Group {
    /// Normal commands (pipelines, scripts, acks, claims).
    pub(crate) redis: RedisConn,
    /// Only for `XREADGROUP ... BLOCK`, which would stall a shared connection.
    reader: RedisConn,
    pub(crate) streams: Vec<String>,
    consumer: String,
    /// `COUNT` of one read (per stream) and of one `XAUTOCLAIM`.
    count: usize,
    block: Duration,
    claim_idle: Duration,
    /// `XAUTOCLAIM` calls per stream and claim tick, so a large backlog of a
    /// dead consumer cannot starve new entries.
    claim_rounds: usize,
    /// Wait after a partial batch (zero: none).
    linger: Duration,
    /// A Redis Cluster refuses `XREADGROUP` across slots: several streams are read one by one.
    cluster: bool,
    /// Stream whose turn it is to block, in cluster mode.
    turn: usize,
    /// Re-read this consumer's own pending entries before new ones (after a
    /// start, or an error that left a batch unacked).
    read_pending: bool,
    /// `keys.dead_letters()`.
    dead_letters: String,
}

/// How a [`Group`] reads.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub count: usize,
    pub claim_rounds: usize,
    pub linger: Duration,
}

impl Group {
    /// Opens the two connections and creates the group on every stream.
    pub async fn connect(cfg: &Config, streams: Vec<String>, settings: Settings) -> Result<Group, WorkerError> {
        let target = RedisTarget::new(&cfg.redis_url, cfg.redis_cluster)?;
        // Every request has a deadline: a Redis that stops answering must not
        // hang the worker (the reconnecting manager alone can wait far longer).
        let mut redis = target.connect(Duration::from_secs(5)).await?;
        // The blocking read may legitimately take `block`; allow that plus slack.
        let reader = target.connect(cfg.block + Duration::from_secs(5)).await?;
        stream::ensure_groups(&mut redis, &streams).await?;
        Ok(Group {
            redis,
            reader,
            streams,
            consumer: cfg.worker_id.clone(),
            count: settings.count,
            block: cfg.block,
            claim_idle: cfg.claim_idle,
            claim_rounds: settings.claim_rounds.max(1),
            linger: settings.linger,
            cluster: target.is_cluster(),
            turn: 0,
            // Entries delivered to this consumer name before a restart are ours to finish.
            read_pending: true,
            dead_letters: Keys::new(cfg.key_prefix.clone()).dead_letters(),
        })
    }

    /// Reads one batch: this consumer's own pending entries first when it
    /// owes them, else new entries, blocking up to `block`.
    async fn read(&mut self) -> Result<Vec<Entry>, WorkerError> {
        if self.cluster && self.streams.len() > 1 {
            return self.read_cluster().await;
        }
        let (id, count, block) = (&self.consumer, self.count, self.block.as_millis() as u64);
        if self.read_pending {
            let pending = stream::read_group(&mut self.reader, &self.streams, id, count, block, true).await?;
            if !pending.is_empty() {
                return Ok(pending);
            }
            self.read_pending = false;
        }
        stream::read_group(&mut self.reader, &self.streams, id, count, block, false).await
    }

    /// Cluster mode: one stream per `XREADGROUP` (they live in different
    /// slots). Non-blocking over all streams; when all are empty, block
    /// briefly on one stream in turn.
    async fn read_cluster(&mut self) -> Result<Vec<Entry>, WorkerError> {
        let (id, count) = (self.consumer.clone(), self.count);
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
            let block = self.block.as_millis().min(50) as u64;
            out = stream::read_group(&mut self.reader, &one, &id, count, block, false).await?;
        }
        Ok(out)
    }
}

/// Most entries the dead-letter stream keeps (`MAXLEN ~`): enough to look
/// into a burst of poison, bounded if something keeps producing it.
pub const DEAD_LETTERS_LEN: usize = 100_000;

/// Why an entry went to the dead-letter stream (the metric's bounded label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// The bytes are not an envelope of the stream's type.
    Decode,
    /// An envelope version this reader does not read (a newer writer).
    Version,
    /// The database refuses the event (a constraint, a value out of range).
    Refused,
    /// The message's position is held by a different message in the record.
    SeqConflict,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Decode => "decode",
            DeadReason::Version => "version",
            DeadReason::Refused => "refused",
            DeadReason::SeqConflict => "seq_conflict",
        }
    }

    /// `Version` for an unknown envelope version, else `Decode`.
    pub fn of(e: &schema::envelope::EnvelopeError) -> Self {
        match e {
            schema::envelope::EnvelopeError::Version(_) => DeadReason::Version,
            _ => DeadReason::Decode,
        }
    }
}

/// Fields of a dead-letter entry: the stream and id it came from, the
/// reason, a short detail (the error) and, under [`FIELD`], its raw bytes.
pub const DL_STREAM: &str = "stream";
pub const DL_ID: &str = "id";
pub const DL_REASON: &str = "reason";
pub const DL_DETAIL: &str = "detail";

/// What goes out after a step, in one pipeline: the step's own commands,
/// dead letters, and the acknowledgement of the whole batch.
pub struct Tail<'e> {
    entries: &'e [Entry],
    pipe: Pipeline,
    acked: bool,
    dead_key: &'e str,
    dead: Vec<DeadReason>,
}

impl<'e> Tail<'e> {
    fn new(entries: &'e [Entry], dead_key: &'e str) -> Self {
        Tail { entries, pipe: redis::pipe(), acked: false, dead_key, dead: Vec::new() }
    }

    /// Moves `e` to the dead-letter stream instead of dropping it: the copy
    /// goes out in the same pipeline, before the batch's ack, so an entry is
    /// never acked without it (a failure in between redelivers the entry,
    /// which may then be dead-lettered twice: at least once, like the rest).
    pub fn dead_letter(&mut self, e: &Entry, reason: DeadReason, detail: &str) {
        self.pipe
            .cmd("XADD")
            .arg(self.dead_key)
            .arg("MAXLEN")
            .arg("~")
            .arg(DEAD_LETTERS_LEN)
            .arg("*")
            .arg(DL_STREAM)
            .arg(&e.stream)
            .arg(DL_ID)
            .arg(&e.id)
            .arg(DL_REASON)
            .arg(reason.as_str())
            .arg(DL_DETAIL)
            .arg(detail)
            .arg(FIELD)
            .arg(e.payload.as_deref().unwrap_or_default())
            .ignore();
        self.dead.push(reason);
    }

    /// The batch.
    pub fn entries(&self) -> &'e [Entry] {
        self.entries
    }

    /// The pipeline; every command in it must be `.ignore()`d.
    pub fn pipe(&mut self) -> &mut Pipeline {
        &mut self.pipe
    }

    /// Adds `XACK`+`XDEL` of every entry of the batch (once; the consumer
    /// adds it after the step when the step did not).
    pub fn ack(&mut self) {
        if self.acked {
            return;
        }
        self.acked = true;
        // Few streams per batch (the shards): group ids by stream, in order.
        let mut by_stream: Vec<(&str, Vec<&str>)> = Vec::new();
        for e in self.entries {
            match by_stream.iter_mut().find(|(s, _)| *s == e.stream) {
                Some((_, ids)) => ids.push(&e.id),
                None => by_stream.push((&e.stream, vec![&e.id])),
            }
        }
        for (s, ids) in &by_stream {
            self.pipe.cmd("XACK").arg(*s).arg(WORKER_GROUP).arg(ids).ignore();
            // Acked entries are done with (history is in SQL, a request is
            // answered); deleting them keeps the streams small without a
            // MAXLEN that could drop unread ones.
            self.pipe.cmd("XDEL").arg(*s).arg(ids).ignore();
        }
    }
}

/// A consumer: the group side and the step.
pub struct Consumer<S: Step> {
    pub(crate) group: Group,
    pub(crate) step: S,
}

impl<S: Step> Consumer<S> {
    pub fn from_parts(group: Group, step: S) -> Self {
        Consumer { group, step }
    }

    /// Reads one batch (see [`Group`]); counts a failure as `read`.
    pub async fn read_batch(&mut self) -> Result<Vec<Entry>, WorkerError> {
        let r = self.group.read().await;
        if r.is_err() {
            self.step.count_error("read");
        }
        r
    }

    /// One step: read a batch and process it.
    pub async fn process_once(&mut self) -> Result<S::Report, WorkerError> {
        let entries = self.read_batch().await?;
        self.handle(entries).await
    }

    /// Processes entries this consumer holds (read or claimed), then acks
    /// them. On error nothing is acked and the entries stay pending for a retry.
    pub async fn handle(&mut self, entries: Vec<Entry>) -> Result<S::Report, WorkerError> {
        if entries.is_empty() {
            return Ok(S::Report::default());
        }
        let r = self.handle_inner(&entries).await;
        if r.is_err() {
            self.group.read_pending = true;
        }
        r
    }

    async fn handle_inner(&mut self, entries: &[Entry]) -> Result<S::Report, WorkerError> {
        let mut tail = Tail::new(entries, &self.group.dead_letters);
        let report = self.step.process(&mut self.group.redis, &mut tail).await?;
        tail.ack();
        let started = Instant::now();
        if let Err(e) = tail.pipe.query_async::<()>(&mut self.group.redis).await {
            self.step.count_error("redis");
            return Err(e.into());
        }
        if let Some(op) = S::ACK_OP {
            ::metrics::histogram!(metrics::REDIS_SECONDS, "op" => op).record(started.elapsed().as_secs_f64());
        }
        for reason in &tail.dead {
            ::metrics::counter!(metrics::DEAD_LETTERS_TOTAL, "reason" => reason.as_str()).increment(1);
        }
        Ok(report)
    }

    /// Claims and processes entries idle longer than `claim_idle` on every
    /// stream (a dead consumer's), then runs the step's claim-tick hook.
    pub async fn claim_once(&mut self) -> Result<S::Report, WorkerError> {
        let r = self.claim_inner().await;
        if r.is_err() {
            self.step.count_error("claim");
        }
        r
    }

    async fn claim_inner(&mut self) -> Result<S::Report, WorkerError> {
        let mut report = S::Report::default();
        let idle = self.group.claim_idle.as_millis() as u64;
        for s in self.group.streams.clone() {
            let mut cursor = String::from("0-0");
            for _ in 0..self.group.claim_rounds {
                let (entries, next) =
                    stream::autoclaim(&mut self.group.redis, &s, &self.group.consumer, idle, &cursor, self.group.count).await?;
                if !entries.is_empty() {
                    tracing::info!(consumer = S::NAME, stream = %s, entries = entries.len(), "claimed idle entries");
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
        self.step.after_claim(&mut self.group).await?;
        Ok(report)
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

/// Loops read -> process until `stop` flips, claiming idle entries every
/// `claim_interval`, lingering after a partial batch and backing off (up to
/// 5 s) after an error. Only the blocking read is interrupted by a stop.
pub async fn run<S: Step>(c: &mut Consumer<S>, stop: &mut watch::Receiver<bool>, claim_interval: Duration) {
    const MIN_BACKOFF: Duration = Duration::from_millis(100);
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    let mut backoff = MIN_BACKOFF;
    let mut next_claim = Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        if Instant::now() >= next_claim {
            if let Err(e) = c.claim_once().await {
                tracing::warn!(consumer = S::NAME, error = %e, "claiming idle entries failed");
            }
            next_claim = Instant::now() + claim_interval;
        }
        let read = tokio::select! {
            r = c.read_batch() => r,
            _ = stop.changed() => break,
        };
        let result = match read {
            Ok(entries) => c.handle(entries).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(r) => {
                backoff = MIN_BACKOFF;
                // A partial batch: the stream is drained, let the next one gather.
                let (n, linger) = (r.entries(), c.group.linger);
                if n > 0 && n < c.group.count && !linger.is_zero() && pause(stop, linger).await {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(consumer = S::NAME, error = %e, retry_in = ?backoff, "batch failed; entries stay pending");
                if pause(stop, backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

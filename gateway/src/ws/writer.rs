//! The write side: the only task that writes to the socket. It drains the
//! bounded outbound queue, holds live events until a possible `resume`
//! (at most [`HOLD_MS`]) or a watch's replay, answers resumes from the replay
//! stream, and writes every positioned event once and in order, filling a
//! gap from the replay stream first.
//!
//! Every write and flush has a deadline (`CHAT_WRITE_TIMEOUT_MS`): a client
//! that stops reading ends its socket instead of holding a task and its
//! frames forever; and a replay is read and written a page at a time, so
//! what a stalled socket holds is one page, whatever it asked to resume.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use redis::AsyncCommands;
use schema::frames::{ErrorCode, FrameError, ServerFrame};
use schema::limits::MAX_REPLAY;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ordering::{EventOrder, ReplaySource};
use super::Writer;
use crate::hub::{close, Out};
use crate::state::AppState;

/// How long live events wait for the client's first frame (a possible resume).
pub const HOLD_MS: u64 = 1000;
/// Interval of server pings (keeps idle detection honest on both sides).
const PING_EVERY: Duration = Duration::from_secs(30);
/// Replay entries read from Redis and written per step: the most a resume
/// holds in memory at once (16 frames of at most ~20 KiB).
const REPLAY_PAGE: usize = 16;
/// The writer's replay source: the conversation's replay stream in Redis.
struct RedisReplay<'a>(&'a AppState);

impl ReplaySource for RedisReplay<'_> {
    fn range(&mut self, conv: &str, from: u64, to: u64, limit: usize) -> impl std::future::Future<Output = Vec<(u64, String)>> + Send {
        let mut conn = self.0.redis();
        let key = self.0.keys.replay(conv);
        async move { crate::broker::replay::range(&mut conn, &key, from, Some(to), limit).await.unwrap_or_default() }
    }
}

/// A live event held back: position, frame, floor (see [`Out::Event`]).
type Held = (u64, Arc<str>, u64);

/// The write side: the only task that writes to the socket.
struct WriteState {
    state: AppState,
    ws: Writer,
    /// Highest position written per conversation, and the rules applied to it.
    order: EventOrder,
    /// Live events held until the first client frame (or [`HOLD_MS`]).
    held: Option<Vec<Out>>,
    /// Live events of conversations being watched, held until their replay.
    watch_held: HashMap<Arc<str>, Vec<Held>>,
    /// A close frame went out: nothing more may follow it.
    closed: bool,
    /// Deadline of one write or flush.
    write_timeout: Duration,
}

/// A write or flush that did not complete within its deadline.
fn timed_out() -> WebSocketError {
    WebSocketError::IoError(std::io::Error::new(std::io::ErrorKind::TimedOut, "write deadline passed: client not reading"))
}

pub async fn write_loop(state: AppState, mut rx: mpsc::Receiver<Out>, ws: Writer, kill: CancellationToken, close_code: Arc<AtomicU16>) {
    let write_timeout = Duration::from_millis(state.cfg.write_timeout_ms.max(1));
    let mut w = WriteState {
        state,
        ws,
        order: EventOrder::new(schema::now_ms()),
        held: Some(Vec::new()),
        watch_held: HashMap::new(),
        closed: false,
        write_timeout,
    };
    let hold = tokio::time::sleep(Duration::from_millis(HOLD_MS));
    tokio::pin!(hold);
    // Often enough that a client answering pings is never taken for silent.
    let every = PING_EVERY.min(Duration::from_secs(w.state.cfg.idle_timeout_secs.max(1)) / 3);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut shutdown = w.state.shutdown.clone();
    let res: Result<(), WebSocketError> = async {
        loop {
            tokio::select! {
                biased;
                _ = kill.cancelled() => return Ok(()),
                _ = shutdown.changed() => {
                    close_code.store(close::GOING_AWAY, Ordering::Relaxed);
                    return Ok(());
                }
                _ = &mut hold, if w.held.is_some() => {
                    w.release().await?;
                    w.flush().await?;
                }
                _ = ping.tick() => {
                    w.put(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b""))).await?;
                    w.flush().await?;
                }
                item = rx.recv() => {
                    let Some(out) = item else { return Ok(()) };
                    if !w.process(out).await? {
                        return Ok(());
                    }
                    // Drain what is already queued, then flush once.
                    let mut n = 0;
                    while n < 256 {
                        match rx.try_recv() {
                            Ok(out) => {
                                if !w.process(out).await? {
                                    return Ok(());
                                }
                            }
                            Err(_) => break,
                        }
                        n += 1;
                    }
                    metrics::gauge!(crate::metrics::QUEUE_DEPTH).set(rx.len() as f64);
                    w.flush().await?;
                }
            }
        }
    }
    .await;
    if res.is_ok() && !w.closed {
        let code = close_code.load(Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = w.ws.write_frame(Frame::close(code, close::reason(code).as_bytes())).await;
            let _ = w.ws.flush().await;
        })
        .await;
    }
    kill.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(200), async { w.ws.flush().await }).await;
}

impl WriteState {
    /// Writes one frame within the write deadline.
    async fn put(&mut self, f: Frame<'_>) -> Result<(), WebSocketError> {
        tokio::time::timeout(self.write_timeout, self.ws.write_frame(f)).await.map_err(|_| timed_out())?
    }

    /// Flushes within the write deadline.
    async fn flush(&mut self) -> Result<(), WebSocketError> {
        tokio::time::timeout(self.write_timeout, self.ws.flush()).await.map_err(|_| timed_out())?
    }

    async fn text(&mut self, s: &str) -> Result<(), WebSocketError> {
        metrics::counter!(crate::metrics::FRAMES_OUT, "type" => crate::metrics::frame_type(s)).increment(1);
        self.put(Frame::text(Payload::Borrowed(s.as_bytes()))).await
    }

    /// Returns false when the socket must close.
    async fn process(&mut self, out: Out) -> Result<bool, WebSocketError> {
        match out {
            Out::Frame(f) => self.text(&f).await?,
            Out::Frames(fs) => {
                if let Some(first) = fs.first() {
                    metrics::counter!(crate::metrics::FRAMES_OUT, "type" => crate::metrics::frame_type(first)).increment(fs.len() as u64);
                }
                for f in fs.iter() {
                    self.put(Frame::text(Payload::Borrowed(f.as_bytes()))).await?;
                }
            }
            Out::Event { conv, pos, frame, floor } => {
                if let Some(held) = self.held.as_mut() {
                    held.push(Out::Event { conv, pos, frame, floor });
                    // Holding is a courtesy to a client about to resume; it
                    // must not cost memory: past the queue size, let them go.
                    if held.len() >= self.state.cfg.outbound_queue {
                        self.release().await?;
                    }
                } else if let Some(held) = self.watch_held.get_mut(&conv) {
                    held.push((pos, frame, floor));
                } else {
                    self.event(conv, pos, &frame, floor).await?;
                }
            }
            Out::Watch(conv) => {
                self.watch_held.entry(conv).or_default();
            }
            Out::Unwatch(conv) => {
                self.watch_held.remove(&conv);
                self.order.forget(&conv);
            }
            // Boxed, as the gap fill: Redis calls are rare here and large.
            Out::Resume(positions, epoch) => Box::pin(self.resume_all(positions, epoch)).await?,
            Out::Open => self.release().await?,
            Out::Pong(p) => {
                self.put(Frame::pong(Payload::Owned(p))).await?;
            }
            Out::Echo(text, data) => {
                let op = if text { OpCode::Text } else { OpCode::Binary };
                self.put(Frame::new(true, op, None, Payload::Owned(data))).await?;
            }
            Out::CloseRaw(p) => {
                self.closed = true;
                self.put(Frame::close_raw(Payload::Owned(p))).await?;
                self.flush().await?;
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn resume_all(&mut self, positions: Vec<(String, u64)>, epoch: Option<String>) -> Result<(), WebSocketError> {
        // Positions from another epoch are meaningless here: reload all.
        let stale = match &epoch {
            Some(e) => crate::broker::replay::current_epoch(&mut self.state.redis(), &self.state.keys).await.map(|cur| cur != *e).unwrap_or(false),
            None => false,
        };
        for (conv, pos) in positions {
            let key: Arc<str> = Arc::from(conv.as_str());
            self.resume(conv, pos, stale).await?;
            // A newly watched conversation: its live events since the watch
            // follow the replay (already written ones are dropped).
            if let Some(held) = self.watch_held.remove(&key) {
                for (p, f, floor) in held {
                    self.event(key.clone(), p, &f, floor).await?;
                }
            }
        }
        self.release().await
    }

    /// Writes the held live events (dedupe and gap filling apply).
    async fn release(&mut self) -> Result<(), WebSocketError> {
        if let Some(held) = self.held.take() {
            for out in held {
                if let Out::Event { conv, pos, frame, floor } = out {
                    self.event(conv, pos, &frame, floor).await?;
                }
            }
        }
        Ok(())
    }

    /// Writes a positioned event exactly once and in order (the rules are in
    /// [`EventOrder`]). Without a position written yet in this conversation,
    /// the node's `floor` tells which earlier positions are still in flight
    /// (see `node::inbox`).
    async fn event(&mut self, conv: Arc<str>, pos: u64, frame: &str, floor: u64) -> Result<(), WebSocketError> {
        // Boxed: Redis calls are rare here and large.
        let d = Box::pin(self.order.event(&mut RedisReplay(&self.state), &conv, pos, floor)).await;
        if d.filled {
            metrics::counter!(crate::metrics::GAP_FILLS).increment(1);
        }
        for f in &d.fills {
            self.text(f).await?;
        }
        if d.write {
            self.text(frame).await?;
        }
        Ok(())
    }

    /// Replays a conversation after `from` (the last position the client
    /// holds), a page at a time: a client that stops reading holds one page
    /// until the write deadline ends it, not the whole replay.
    async fn resume(&mut self, conv: String, from: u64, stale: bool) -> Result<(), WebSocketError> {
        let mut conn = self.state.redis();
        let key = self.state.keys.replay(&conv);
        let first = crate::broker::replay::range(&mut conn, &key, from + 1, None, REPLAY_PAGE).await;
        let current: Result<Option<u64>, _> = conn.hget(self.state.keys.state(&conv), "n").await;
        let (mut page, current) = match (first, current) {
            (Ok(e), Ok(c)) => (e, c.unwrap_or(0)),
            _ => return self.resume_failed().await,
        };
        let mut complete = if stale || from > current {
            // The client holds positions this Redis never issued (it lost its state).
            false
        } else if current - from > MAX_REPLAY as u64 {
            false
        } else {
            match page.first() {
                Some((p, _)) => *p == from + 1,
                None => current <= from,
            }
        };
        let conv_arc: Arc<str> = Arc::from(conv.as_str());
        let mut to = from;
        if complete {
            let mut replayed = 0u64;
            // Positions are gapless: the replay ends at `current` (later ones
            // come live), or early where the stream was trimmed meanwhile.
            loop {
                for (p, f) in &page {
                    if *p != to + 1 {
                        complete = false;
                        break;
                    }
                    self.text(f).await?;
                    to = *p;
                    replayed += 1;
                }
                if !complete || to >= current || page.len() < REPLAY_PAGE {
                    break;
                }
                page = match crate::broker::replay::range(&mut conn, &key, to + 1, Some(current), REPLAY_PAGE).await {
                    Ok(p) => p,
                    Err(_) => return self.resume_failed().await,
                };
            }
            metrics::counter!(crate::metrics::REPLAYED).increment(replayed);
            if !complete {
                to = current;
            }
        } else {
            to = current;
        }
        self.order.resumed(conv_arc, to);
        let f = ServerFrame::Replay { conversation: conv, from_seq: from + 1, complete, to_seq: Some(to) };
        self.text(&f.to_json()).await
    }

    async fn resume_failed(&mut self) -> Result<(), WebSocketError> {
        let f = ServerFrame::error(None, FrameError::new(ErrorCode::Unavailable, "resume failed: retry"));
        self.text(&f.to_json()).await
    }
}

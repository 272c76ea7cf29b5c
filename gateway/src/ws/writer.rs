//! The write side: the only task that writes to the socket. It drains the
//! bounded outbound queue, holds live events until a possible `resume`
//! (at most [`HOLD_MS`]) or a watch's replay, answers resumes from the replay
//! stream, and writes every positioned event once and in order, filling a
//! gap from the replay stream first.

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

use super::Writer;
use crate::hub::{close, Out, NO_FLOOR};
use crate::state::AppState;

/// How long live events wait for the client's first frame (a possible resume).
pub const HOLD_MS: u64 = 1000;
/// Interval of server pings (keeps idle detection honest on both sides).
const PING_EVERY: Duration = Duration::from_secs(30);
/// Positions remembered per socket before the map is reset.
const MAX_TRACKED: usize = 50_000;
/// Widest reorder of one conversation's events filled from the node's floor.
const MAX_IN_FLIGHT: u64 = 64;
/// Positions looked at before a conversation's first event on a node that
/// has relayed nothing of it yet ([`WriteState::fill_in_flight`]).
const FIRST_CONTACT_WINDOW: u64 = 16;

/// When a positioned event was sent: a message's `ts`, an edit's
/// `edited_at`; `None` for the others (deletions, reactions), which then
/// count as older than the socket.
fn sent_at(frame: &str) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_str(frame).ok()?;
    v["message"]["ts"].as_i64().or_else(|| v["edited_at"].as_i64())
}
/// A live event held back: position, frame, floor (see [`Out::Event`]).
type Held = (u64, Arc<str>, u64);

/// The write side: the only task that writes to the socket.
struct WriteState {
    state: AppState,
    ws: Writer,
    /// Highest position written per conversation.
    hw: HashMap<Arc<str>, u64>,
    /// Live events held until the first client frame (or [`HOLD_MS`]).
    held: Option<Vec<Out>>,
    /// Live events of conversations being watched, held until their replay.
    watch_held: HashMap<Arc<str>, Vec<Held>>,
    /// A close frame went out: nothing more may follow it.
    closed: bool,
    /// When the socket opened (ms): events sent since are owed to it.
    opened_ms: i64,
}

pub async fn write_loop(state: AppState, mut rx: mpsc::Receiver<Out>, ws: Writer, kill: CancellationToken, close_code: Arc<AtomicU16>) {
    let mut w = WriteState {
        state,
        ws,
        hw: HashMap::new(),
        held: Some(Vec::new()),
        watch_held: HashMap::new(),
        closed: false,
        opened_ms: schema::now_ms(),
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
                    w.ws.flush().await?;
                }
                _ = ping.tick() => {
                    w.ws.write_frame(Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b""))).await?;
                    w.ws.flush().await?;
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
                    w.ws.flush().await?;
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
    async fn text(&mut self, s: &str) -> Result<(), WebSocketError> {
        metrics::counter!(crate::metrics::FRAMES_OUT, "type" => crate::metrics::frame_type(s)).increment(1);
        self.ws.write_frame(Frame::text(Payload::Borrowed(s.as_bytes()))).await
    }

    /// Returns false when the socket must close.
    async fn process(&mut self, out: Out) -> Result<bool, WebSocketError> {
        match out {
            Out::Frame(f) => self.text(&f).await?,
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
                self.hw.remove(&conv);
            }
            // Boxed, as the gap fill: Redis calls are rare here and large.
            Out::Resume(positions, epoch) => Box::pin(self.resume_all(positions, epoch)).await?,
            Out::Open => self.release().await?,
            Out::Pong(p) => {
                self.ws.write_frame(Frame::pong(Payload::Owned(p))).await?;
            }
            Out::Echo(text, data) => {
                let op = if text { OpCode::Text } else { OpCode::Binary };
                self.ws.write_frame(Frame::new(true, op, None, Payload::Owned(data))).await?;
            }
            Out::CloseRaw(p) => {
                self.closed = true;
                self.ws.write_frame(Frame::close_raw(Payload::Owned(p))).await?;
                self.ws.flush().await?;
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

    /// Writes a positioned event exactly once and in order. Without a
    /// position written yet in this conversation, the node's `floor` tells
    /// which earlier positions are still in flight (see `relay::stream_loop`).
    async fn event(&mut self, conv: Arc<str>, pos: u64, frame: &str, floor: u64) -> Result<(), WebSocketError> {
        match self.hw.get(&conv).copied() {
            Some(h) if pos <= h => return Ok(()),
            Some(h) if pos > h + 1 => Box::pin(self.gap_fill(&conv, pos, h)).await?,
            // In-flight reorders span a few positions; a wide gap means the
            // node missed a stretch (the customer was elsewhere): not ours to fill.
            None if floor != NO_FLOOR && pos > floor + 1 && pos - floor <= MAX_IN_FLIGHT => {
                Box::pin(self.gap_fill(&conv, pos, floor)).await?
            }
            // The node has relayed nothing of this conversation yet, so it
            // cannot tell which earlier positions are still in flight (sent
            // from another node, published after this one): write those sent
            // since the socket opened first, or they would come after this
            // event and be dropped as already passed.
            None if floor == NO_FLOOR && pos > 1 => Box::pin(self.fill_in_flight(&conv, pos)).await?,
            _ => {}
        }
        self.text(frame).await?;
        if self.hw.len() >= MAX_TRACKED {
            self.hw.clear();
        }
        self.hw.insert(conv, pos);
        Ok(())
    }

    /// Writes the events between `h` (written) and `pos` (about to be) from the replay stream.
    async fn gap_fill(&mut self, conv: &str, pos: u64, h: u64) -> Result<(), WebSocketError> {
        let missing = (pos - h - 1).min(MAX_REPLAY as u64);
        self.fill(conv, pos, missing, |p, _| p > h).await
    }

    /// Writes the events just before `pos` (at most [`FIRST_CONTACT_WINDOW`])
    /// that were sent after this socket opened.
    async fn fill_in_flight(&mut self, conv: &str, pos: u64) -> Result<(), WebSocketError> {
        let opened = self.opened_ms;
        self.fill(conv, pos, FIRST_CONTACT_WINDOW, |_, f| sent_at(f).is_some_and(|t| t >= opened)).await
    }

    /// Writes, in order, the replay entries among the `n` positions before
    /// `pos` that `keep` accepts.
    async fn fill(&mut self, conv: &str, pos: u64, n: u64, keep: impl Fn(u64, &str) -> bool) -> Result<(), WebSocketError> {
        metrics::counter!(crate::metrics::GAP_FILLS).increment(1);
        let mut conn = self.state.redis();
        let key = self.state.keys.replay(conv);
        let from = pos.saturating_sub(n).max(1);
        if let Ok(entries) = crate::broker::replay::range(&mut conn, &key, from, Some(pos - 1), n as usize).await {
            for (p, f) in entries {
                if keep(p, &f) {
                    self.text(&f).await?;
                }
            }
        }
        Ok(())
    }

    /// Replays a conversation after `from` (the last position the client holds).
    async fn resume(&mut self, conv: String, from: u64, stale: bool) -> Result<(), WebSocketError> {
        let mut conn = self.state.redis();
        let key = self.state.keys.replay(&conv);
        let entries = crate::broker::replay::range(&mut conn, &key, from + 1, None, MAX_REPLAY + 1).await;
        let current: Result<Option<u64>, _> = conn.get(self.state.keys.seq(&conv)).await;
        let (entries, current) = match (entries, current) {
            (Ok(e), Ok(c)) => (e, c.unwrap_or(0)),
            _ => {
                let f = ServerFrame::error(None, FrameError::new(ErrorCode::Unavailable, "resume failed: retry"));
                return self.text(&f.to_json()).await;
            }
        };
        let complete = if stale || from > current {
            // The client holds positions this Redis never issued (it lost its state).
            false
        } else if entries.len() > MAX_REPLAY {
            false
        } else {
            match entries.first() {
                Some((p, _)) => *p == from + 1,
                None => current <= from,
            }
        };
        let conv_arc: Arc<str> = Arc::from(conv.as_str());
        let mut to = from;
        if complete {
            for (p, f) in &entries {
                self.text(f).await?;
                to = *p;
            }
            metrics::counter!(crate::metrics::REPLAYED).increment(entries.len() as u64);
        } else {
            to = current;
        }
        let hw = self.hw.entry(conv_arc).or_insert(0);
        *hw = (*hw).max(to);
        let f = ServerFrame::Replay { conversation: conv, from_seq: from + 1, complete, to_seq: Some(to) };
        self.text(&f.to_json()).await
    }
}

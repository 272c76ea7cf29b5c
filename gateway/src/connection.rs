//! One socket: a read task (parse, validate, rate-limit, dispatch to a
//! handler) and a write task (the bounded outbound queue, resume replay, and
//! per-conversation ordering: every positioned event is written once, in
//! order; a gap is filled from the replay stream before the event).
//!
//! Live events that arrive before the client's first frame are held back
//! (for at most [`HOLD_MS`]) so that a reconnecting client's `resume` is
//! answered before them, in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use redis::AsyncCommands;
use schema::frames::{parse_client_frame, ClientFrame, ErrorCode, FrameError, ServerFrame, UserKind, MAX_WATCHED};
use schema::limits::{MAX_FRAME_BYTES, MAX_REPLAY};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::GatewayError;
use crate::handlers;
use crate::registry::{ConnHandle, Identity, Out, NO_FLOOR};
use crate::broker::replies::Ints;
use redis_conn::Call;
use crate::state::AppState;
use crate::wbuf::LazyBufWriter;

type Io = TokioIo<Upgraded>;
type Reader = WebSocketRead<ReadHalf<Io>>;
type Writer = WebSocketWrite<LazyBufWriter<WriteHalf<Io>>>;
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
/// Rate-limited frames tolerated in a row before the socket is closed.
const MAX_STRIKES: u32 = 200;

pub const CLOSE_NORMAL: u16 = 1000;
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Application close code: the client did not read fast enough.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;

fn close_reason(code: u16) -> &'static str {
    match code {
        CLOSE_GOING_AWAY => "going away: reconnect and resume",
        CLOSE_POLICY => "policy violation",
        CLOSE_TOO_BIG => "message too big",
        CLOSE_SLOW_CONSUMER => "slow consumer: reconnect and resume",
        _ => "",
    }
}

/// Token bucket.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Self { tokens: burst, rate, burst, last: Instant::now() }
    }
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Serves an upgraded socket until it closes.
pub async fn serve(state: AppState, fut: fastwebsockets::upgrade::UpgradeFut, ident: Identity) {
    let span = tracing::info_span!("ws", user = %ident.id, kind = ?ident.kind);
    async move {
        let mut ws = match fut.await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        ws.set_max_message_size(MAX_FRAME_BYTES);
        ws.set_auto_pong(true);
        ws.set_auto_close(true);
        let (rd, wr) = ws.split(|s| {
            let (r, w) = tokio::io::split(s);
            // Coalesces the frames of one drain into one write; holds no
            // memory while the socket is idle.
            (r, LazyBufWriter::new(w))
        });
        let (tx, rx) = mpsc::channel(state.cfg.outbound_queue);
        let kill = CancellationToken::new();
        let close_code = Arc::new(AtomicU16::new(CLOSE_NORMAL));
        let handle = ConnHandle { id: state.registry.next_id(), tx, kill: kill.clone(), close_code: close_code.clone() };
        // The rare, large futures (Redis calls) are boxed so that the task of
        // every idle socket stays small: a task is as large as the largest
        // future it may await.
        if let Err(e) = Box::pin(register(&state, &ident, &handle)).await {
            tracing::warn!(error = %e, "register failed");
        }
        let epoch = Box::pin(current_epoch(&state)).await.unwrap_or_default();
        let hello = ServerFrame::Hello {
            user: ident.user_ref(),
            epoch,
            conversation: ident.own_conversation().map(str::to_string),
            node: Some(state.node.clone()),
        };
        handle.push(Out::Frame(hello.to_json().into()));
        let writer = tokio::spawn(write_loop(state.clone(), rx, wr, kill.clone(), close_code.clone()));
        let mut watched = HashSet::new();
        read_loop(&state, rd, &ident, &handle, &mut watched).await;
        kill.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
        Box::pin(unregister(&state, &ident, &handle, &watched)).await;
    }
    .instrument(span)
    .await
}

/// The epoch: a random id kept in Redis; a new one means Redis lost its state.
pub async fn current_epoch(state: &AppState) -> Result<String, GatewayError> {
    crate::broker::replay::current_epoch(&mut state.redis(), &state.keys).await
}

async fn register(state: &AppState, ident: &Identity, h: &ConnHandle) -> Result<(), GatewayError> {
    match ident.kind {
        // Agents get their frames from the staff stream, which every node reads.
        UserKind::Agent => state.registry.add_agent(h.clone()),
        UserKind::Customer => {
            let conv = ident.id.as_str();
            state.registry.add_customer(conv, h.clone());
            add_customer_node(state, conv).await?;
        }
    }
    Ok(())
}

/// Lists this node in the conversation's customer nodes (and the node's own
/// index, for the clean-up after a crash); the first node makes the
/// customer online.
async fn add_customer_node(state: &AppState, conv: &str) -> Result<(), GatewayError> {
    let mut conn = state.redis();
    let (added, count): (i64, i64) = redis::pipe()
        .sadd(state.keys.customer_nodes(conv), &state.node)
        .scard(state.keys.customer_nodes(conv))
        .sadd(state.keys.node_customers(&state.node), conv)
        .ignore()
        .query_async(&mut conn)
        .await?;
    if added == 1 && count == 1 {
        let f = ServerFrame::Presence { customer: conv.to_string(), online: true, last_seen: None }.to_json();
        state.broker().to_all_staff(conv, f).await?;
    }
    Ok(())
}

/// The customer has no socket left on any node: record when they were last
/// seen and tell every agent.
pub async fn customer_offline(state: &AppState, conv: &str, last_seen: i64) -> Result<(), GatewayError> {
    let mut conn = state.redis();
    let _: () = conn.hset(state.keys.customer(conv), "last_seen", last_seen).await?;
    let f = ServerFrame::Presence { customer: conv.to_string(), online: false, last_seen: Some(last_seen) }.to_json();
    state.broker().to_all_staff(conv, f).await
}

async fn unregister(state: &AppState, ident: &Identity, h: &ConnHandle, watched: &HashSet<String>) {
    match ident.kind {
        UserKind::Agent => {
            state.registry.remove_agent(h.id);
            if let Err(e) = unwatch_all(state, h, watched.iter().map(String::as_str)).await {
                tracing::warn!(error = %e, "unregister watchers failed");
            }
        }
        UserKind::Customer => {
            let conv = ident.id.as_str();
            if state.registry.remove_customer(conv, h.id) == 0 {
                let res: Result<(), GatewayError> = async {
                    let mut conn = state.redis();
                    let now = schema::now_ms();
                    let (_, left): (i64, i64) = redis::pipe()
                        .srem(state.keys.customer_nodes(conv), &state.node)
                        .scard(state.keys.customer_nodes(conv))
                        .srem(state.keys.node_customers(&state.node), conv)
                        .ignore()
                        .query_async(&mut conn)
                        .await?;
                    if left == 0 {
                        customer_offline(state, conv, now).await?;
                    }
                    // A new socket of this customer may have arrived here
                    // while the removal was in flight, its add landing first:
                    // list the node again. Exact, because a socket is in the
                    // registry before its add is sent, and this check runs
                    // after the removal landed.
                    if state.registry.has_customer(conv) {
                        add_customer_node(state, conv).await?;
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = res {
                    tracing::warn!(error = %e, "unregister presence failed");
                }
            }
        }
    }
}

/// Starts watching conversations for an agent socket: the writer holds
/// their live events from here, the node routes them to the socket, and
/// Redis counts the node as a watcher, so every event numbered after this
/// reaches the node's inbox; the caller then asks the writer to replay what
/// came before (`Out::Resume`), which releases the held events in order.
async fn watch_all(state: &AppState, h: &ConnHandle, convs: &[String]) -> Result<(), GatewayError> {
    if convs.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for c in convs {
        h.push(Out::Watch(Arc::from(c.as_str())));
        state.registry.watch(c, h);
        pipe.cmd("HINCRBY").arg(state.keys.watchers(c)).arg(&state.node).arg(1).ignore();
        pipe.sadd(state.keys.node_watched(&state.node), c).ignore();
    }
    let mut conn = state.redis();
    if let Err(e) = pipe.query_async::<()>(&mut conn).await {
        // Undone here only: decrementing counts that may not have landed
        // could take another socket's watch away. A count that did land
        // stays one too high, which costs frames nobody on the node reads,
        // never a missed one.
        convs.iter().for_each(|c| stop_locally(state, h, c));
        return Err(e.into());
    }
    Ok(())
}

/// The node stops routing a conversation's events to the socket, whose
/// writer forgets it.
fn stop_locally(state: &AppState, h: &ConnHandle, conv: &str) {
    state.registry.unwatch(conv, h.id);
    h.push(Out::Unwatch(Arc::from(conv)));
}

/// Stops watching conversations (an `unwatch`, or the socket closing).
async fn unwatch_all<'a>(state: &AppState, h: &ConnHandle, convs: impl Iterator<Item = &'a str>) -> Result<(), GatewayError> {
    let mut calls = Vec::new();
    for c in convs {
        stop_locally(state, h, c);
        calls.push((c, Call::new().key(state.keys.watchers(c)).arg(&state.node)));
    }
    let mut gone = Vec::new();
    for (c, call) in calls {
        let Ints(n, _) = state.broker().run(&state.scripts.unwatch, &call).await?;
        if n <= 0 {
            gone.push(c);
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    // The node's index (for the clean-up after a crash) drops the
    // conversations no socket here watches any more; one watched again
    // meanwhile is put back (as in `unregister` for customers).
    let mut conn = state.redis();
    let node_watched = state.keys.node_watched(&state.node);
    let _: () = conn.srem(&node_watched, &gone).await?;
    let again: Vec<&str> = gone.iter().copied().filter(|c| state.registry.is_watched(c)).collect();
    if !again.is_empty() {
        let _: () = conn.sadd(&node_watched, &again).await?;
    }
    Ok(())
}

fn reply(h: &ConnHandle, f: ServerFrame) {
    h.push(Out::Frame(f.to_json().into()));
}

fn reply_err(h: &ConnHandle, rid: Option<String>, e: FrameError) {
    metrics::counter!(crate::metrics::ERRORS, "code" => e.code.as_str()).increment(1);
    reply(h, ServerFrame::error(rid, e));
}

async fn read_loop(state: &AppState, rd: Reader, ident: &Identity, h: &ConnHandle, watched: &mut HashSet<String>) {
    let idle = Duration::from_secs(state.cfg.idle_timeout_secs.max(1));
    let rate = state.cfg.send_rate.max(1) as f64;
    let mut writes = Bucket::new(rate, rate * 2.0);
    let mut all = Bucket::new(rate * 5.0, rate * 10.0);
    let mut typing_at: HashMap<String, Instant> = HashMap::new();
    let mut first = true;
    let mut strikes = 0u32;
    let mut reader = MessageReader::new(rd, MAX_FRAME_BYTES);
    let obligated = h.tx.clone();
    let mut send_fn = obligated_sender(obligated);
    loop {
        let msg = tokio::select! {
            r = tokio::time::timeout(idle, reader.next(&mut send_fn)) => r,
            _ = h.kill.cancelled() => return,
        };
        let data: Vec<u8> = match msg {
            Err(_) => {
                h.close_code.store(CLOSE_GOING_AWAY, Ordering::Relaxed);
                return;
            }
            Ok(Err(End::Close(code))) => {
                h.close_code.store(code, Ordering::Relaxed);
                return;
            }
            Ok(Err(End::Gone)) => return,
            // A client answering the server's pings is not silent (browsers
            // answer them by themselves): the idle timer starts again.
            Ok(Ok(Message::Pong)) => continue,
            Ok(Ok(Message::Binary(_))) => {
                reply_err(h, None, FrameError::invalid("binary frames are not accepted: send JSON text frames"));
                continue;
            }
            Ok(Ok(Message::Text(t))) => t,
        };
        if !all.take() {
            strikes += 1;
            if strikes > MAX_STRIKES {
                h.close_code.store(CLOSE_POLICY, Ordering::Relaxed);
                return;
            }
            reply_err(h, None, FrameError::new(ErrorCode::RateLimited, "too many frames: slow down"));
            continue;
        }
        let (rid, cf) = match parse_client_frame(&data) {
            Ok(x) => x,
            Err((rid, e)) => {
                metrics::counter!(crate::metrics::FRAMES_IN, "type" => "invalid").increment(1);
                reply_err(h, rid, e);
                continue;
            }
        };
        metrics::counter!(crate::metrics::FRAMES_IN, "type" => cf.kind()).increment(1);
        if first {
            first = false;
            if !matches!(cf, ClientFrame::Resume { .. }) {
                h.push(Out::Open);
            }
        }
        let is_write = matches!(cf, ClientFrame::Send { .. } | ClientFrame::Edit { .. } | ClientFrame::Delete { .. } | ClientFrame::React { .. });
        if is_write && !writes.take() {
            strikes += 1;
            if strikes > MAX_STRIKES {
                h.close_code.store(CLOSE_POLICY, Ordering::Relaxed);
                return;
            }
            reply_err(h, rid, FrameError::new(ErrorCode::RateLimited, "sending too fast: wait a moment and retry"));
            continue;
        }
        strikes = 0;
        let result = match cf {
            ClientFrame::Ping => Ok(Some(ServerFrame::Pong)),
            // Boxed: see `serve`.
            cf => Box::pin(dispatch(state, ident, h, rid.clone(), cf, &mut typing_at, watched)).await,
        };
        match result {
            Ok(Some(f)) => reply(h, f),
            Ok(None) => {}
            Err(e) => reply_err(h, rid, e.to_frame_error()),
        }
    }
}

/// Runs one client frame's handler.
async fn dispatch(
    state: &AppState,
    ident: &Identity,
    h: &ConnHandle,
    rid: Option<String>,
    cf: ClientFrame,
    typing_at: &mut HashMap<String, Instant>,
    watched: &mut HashSet<String>,
) -> Result<Option<ServerFrame>, GatewayError> {
    match cf {
        ClientFrame::Ping => Ok(Some(ServerFrame::Pong)),
        ClientFrame::Resume { positions, epoch } => {
            let mut ok = Vec::with_capacity(positions.len());
            for (conv, pos) in positions {
                match handlers::authorize(ident, &conv) {
                    Ok(()) => ok.push((conv, pos)),
                    Err(e) => reply_err(h, rid.clone(), e.to_frame_error()),
                }
            }
            // An agent resumes the conversations it holds: it watches them.
            if ident.is_agent() {
                let mut new = Vec::new();
                let mut over = 0;
                for (c, _) in &ok {
                    if watched.contains(c) || new.contains(c) {
                        continue;
                    }
                    if watched.len() + new.len() >= MAX_WATCHED {
                        over += 1;
                    } else {
                        new.push(c.clone());
                    }
                }
                if over > 0 {
                    let msg = format!("watching at most {MAX_WATCHED} conversations: {over} resumed but not watched");
                    reply_err(h, rid.clone(), FrameError::invalid(msg));
                }
                if let Err(e) = watch_all(state, h, &new).await {
                    reply_err(h, rid.clone(), e.to_frame_error());
                } else {
                    watched.extend(new);
                }
            }
            h.push(Out::Resume(ok, epoch));
            Ok(None)
        }
        ClientFrame::Watch { conversation, after } => {
            if !ident.is_agent() {
                return Err(GatewayError::forbidden("watch: customers receive their own conversation without it"));
            }
            if !watched.contains(&conversation) {
                if watched.len() >= MAX_WATCHED {
                    return Err(GatewayError::invalid(format!(
                        "watch: at most {MAX_WATCHED} conversations per socket; unwatch one first"
                    )));
                }
                crate::auth::ensure_conversation(state, &conversation).await?;
                watch_all(state, h, std::slice::from_ref(&conversation)).await?;
                watched.insert(conversation.clone());
            }
            h.push(Out::Resume(vec![(conversation, after)], None));
            Ok(None)
        }
        ClientFrame::Unwatch { conversation } => {
            if !ident.is_agent() {
                return Err(GatewayError::forbidden("unwatch: customers receive their own conversation"));
            }
            if watched.remove(&conversation) {
                unwatch_all(state, h, std::iter::once(conversation.as_str())).await?;
            }
            Ok(rid.map(|rid| ServerFrame::Ack {
                rid: Some(rid),
                conversation,
                seq: 0,
                ts: schema::now_ms(),
                pos: None,
                duplicate: false,
            }))
        }
        ClientFrame::Send { conversation, client_id, text, reply_to } => {
            handlers::send(state, ident, rid.clone(), conversation, client_id, text, reply_to).await.map(Some)
        }
        ClientFrame::Edit { conversation, seq, text } => {
            handlers::edit_or_delete(state, ident, rid.clone(), conversation, seq, Some(text)).await.map(Some)
        }
        ClientFrame::Delete { conversation, seq } => {
            handlers::edit_or_delete(state, ident, rid.clone(), conversation, seq, None).await.map(Some)
        }
        ClientFrame::React { conversation, seq, emoji, on } => {
            handlers::react(state, ident, rid.clone(), conversation, seq, emoji, on).await.map(Some)
        }
        ClientFrame::Delivered { conversation, seq } => {
            handlers::read_state(state, ident, rid.clone(), conversation, seq, false).await
        }
        ClientFrame::Seen { conversation, seq } => {
            handlers::read_state(state, ident, rid.clone(), conversation, seq, true).await
        }
        ClientFrame::Typing { conversation } => {
            // At most one relay per conversation every 1.5 s; extra frames are dropped quietly.
            let now = Instant::now();
            let due = typing_at.get(&conversation).is_none_or(|t| now.duration_since(*t) >= Duration::from_millis(1500));
            if due {
                if typing_at.len() > 1000 {
                    typing_at.clear();
                }
                typing_at.insert(conversation.clone(), now);
                handlers::typing(state, ident, conversation).await.map(|_| None)
            } else {
                Ok(None)
            }
        }
    }
}

/// A whole message read from a socket.
pub enum Message {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    /// A pong (the answer to the server's ping): no data, but the peer is alive.
    Pong,
}

/// Why reading stopped.
pub enum End {
    /// The socket must be closed with this code.
    Close(u16),
    /// The peer closed or the connection broke.
    Gone,
}

pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_BAD_DATA: u16 = 1007;

/// Pong and close replies owed by the reader go through the write task, the
/// socket's only writer.
pub fn obligated_sender(tx: mpsc::Sender<Out>) -> impl FnMut(Frame<'_>) -> std::future::Ready<Result<(), std::io::Error>> {
    move |f: Frame<'_>| {
        let out = match f.opcode {
            OpCode::Pong => Some(Out::Pong(f.payload.to_vec())),
            // Control frames carry at most 125 bytes (RFC 6455 5.5); the
            // library checks pings only, so an oversized close is answered here.
            OpCode::Close if f.payload.len() > 125 => Some(Out::CloseRaw(CLOSE_PROTOCOL.to_be_bytes().to_vec())),
            OpCode::Close => Some(Out::CloseRaw(f.payload.to_vec())),
            _ => None,
        };
        if let Some(o) = out {
            let _ = tx.try_send(o);
        }
        std::future::ready(Ok(()))
    }
}

/// Reassembles fragmented messages with a cap on the whole message (the
/// library caps single frames only), validates UTF-8 of text, and maps
/// protocol violations to their close codes (RFC 6455 section 7.4.1).
pub struct MessageReader {
    rd: Reader,
    max: usize,
    partial: Option<(bool, Vec<u8>)>,
}

impl MessageReader {
    pub fn new(rd: Reader, max: usize) -> Self {
        Self { rd, max, partial: None }
    }

    pub async fn next<F>(&mut self, send_fn: &mut F) -> Result<Message, End>
    where
        F: FnMut(Frame<'_>) -> std::future::Ready<Result<(), std::io::Error>>,
    {
        loop {
            let frame = match self.rd.read_frame(send_fn).await {
                Ok(f) => f,
                Err(WebSocketError::FrameTooLarge) => return Err(End::Close(CLOSE_TOO_BIG)),
                Err(WebSocketError::InvalidUTF8) => return Err(End::Close(CLOSE_BAD_DATA)),
                Err(WebSocketError::IoError(_) | WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed) => {
                    return Err(End::Gone)
                }
                // Reserved bits, bad opcodes, bad close frames, fragmented control frames...
                Err(e) => {
                    tracing::debug!(error = %e, "protocol error");
                    return Err(End::Close(CLOSE_PROTOCOL));
                }
            };
            let (text, data) = match (frame.opcode, self.partial.as_mut()) {
                (OpCode::Close, _) => return Err(End::Gone),
                (OpCode::Ping, _) => continue,
                (OpCode::Pong, _) => return Ok(Message::Pong),
                (OpCode::Text | OpCode::Binary, None) => {
                    let text = frame.opcode == OpCode::Text;
                    if !frame.fin {
                        if frame.payload.len() > self.max {
                            return Err(End::Close(CLOSE_TOO_BIG));
                        }
                        self.partial = Some((text, frame.payload.to_vec()));
                        continue;
                    }
                    (text, frame.payload.to_vec())
                }
                (OpCode::Continuation, Some((_, buf))) => {
                    if buf.len() + frame.payload.len() > self.max {
                        return Err(End::Close(CLOSE_TOO_BIG));
                    }
                    buf.extend_from_slice(&frame.payload);
                    if !frame.fin {
                        continue;
                    }
                    match self.partial.take() {
                        Some(p) => p,
                        None => continue,
                    }
                }
                // A continuation with nothing to continue, or a new message inside a fragmented one.
                _ => return Err(End::Close(CLOSE_PROTOCOL)),
            };
            if text {
                if std::str::from_utf8(&data).is_err() {
                    return Err(End::Close(CLOSE_BAD_DATA));
                }
                return Ok(Message::Text(data));
            }
            return Ok(Message::Binary(data));
        }
    }
}

/// Test-only echo route (`CHAT_TEST_ECHO=1`): the same socket stack (reader,
/// write task, close handling) echoing every message, for the Autobahn suite.
pub async fn serve_echo(state: AppState, fut: fastwebsockets::upgrade::UpgradeFut) {
    let Ok(mut ws) = fut.await else { return };
    const ECHO_MAX: usize = 32 << 20;
    ws.set_max_message_size(ECHO_MAX);
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let (rd, wr) = ws.split(|s| {
        let (r, w) = tokio::io::split(s);
        (r, LazyBufWriter::new(w))
    });
    let (tx, rx) = mpsc::channel(64);
    let kill = CancellationToken::new();
    let close_code = Arc::new(AtomicU16::new(CLOSE_NORMAL));
    let writer = tokio::spawn(write_loop(state, rx, wr, kill.clone(), close_code.clone()));
    // No resume to wait for.
    let _ = tx.send(Out::Open).await;
    let mut reader = MessageReader::new(rd, ECHO_MAX);
    let mut send_fn = obligated_sender(tx.clone());
    loop {
        match reader.next(&mut send_fn).await {
            Ok(Message::Text(t)) => {
                if tx.send(Out::Echo(true, t)).await.is_err() {
                    break;
                }
            }
            Ok(Message::Binary(b)) => {
                if tx.send(Out::Echo(false, b)).await.is_err() {
                    break;
                }
            }
            Ok(Message::Pong) => {}
            Err(End::Close(code)) => {
                close_code.store(code, Ordering::Relaxed);
                break;
            }
            Err(End::Gone) => break,
        }
    }
    // Let the writer finish what is queued (the close reply among it).
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
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

async fn write_loop(state: AppState, mut rx: mpsc::Receiver<Out>, ws: Writer, kill: CancellationToken, close_code: Arc<AtomicU16>) {
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
                    close_code.store(CLOSE_GOING_AWAY, Ordering::Relaxed);
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
            let _ = w.ws.write_frame(Frame::close(code, close_reason(code).as_bytes())).await;
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
            Some(e) => current_epoch(&self.state).await.map(|cur| cur != *e).unwrap_or(false),
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

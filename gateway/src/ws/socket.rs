//! One socket: the upgrade's future becomes a read task (this module: parse,
//! validate, rate-limit, hand each frame to `cmd`) and a write task
//! (`writer`), joined by the socket's bounded queue; registered in the hub
//! and in presence while it lives.
//!
//! Live events that arrive before the client's first frame are held back
//! (for at most [`super::writer::HOLD_MS`]) so that a reconnecting client's
//! `resume` is answered before them, in order.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use schema::frames::{parse_client_frame, ClientFrame, ErrorCode, FrameError, ServerFrame};
use schema::limits::MAX_FRAME_BYTES;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::reader::{obligated_sender, End, Message, MessageReader};
use super::wbuf::LazyBufWriter;
use super::writer::write_loop;
use super::Reader;
use crate::cmd::{self, reply, reply_err, Ctx, Session};
use crate::hub::limits::{Bucket, Slot};
use crate::hub::{close, ConnHandle, Out};
use crate::identity::Identity;
use crate::node::presence;
use crate::state::AppState;

/// Rate-limited frames tolerated in a row before the socket is closed.
const MAX_STRIKES: u32 = 200;
/// How long a closing socket's writer may take to finish (its close frame).
const WRITER_GRACE: Duration = Duration::from_secs(2);

/// Serves an upgraded socket until it closes.
pub async fn serve(state: AppState, fut: fastwebsockets::upgrade::UpgradeFut, ident: Identity, slot: Slot) {
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
        let close_code = Arc::new(AtomicU16::new(close::NORMAL));
        let handle = ConnHandle {
            id: state.registry.next_id(),
            tx,
            kill: kill.clone(),
            close_code: close_code.clone(),
            session: ident.session.as_deref().map(Arc::from),
        };
        // The rare, large futures (Redis calls) are boxed so that the task of
        // every idle socket stays small: a task is as large as the largest
        // future it may await.
        let subscribed = Box::pin(presence::register(&state, &ident, &handle)).await;
        let epoch = Box::pin(crate::broker::replay::current_epoch(&mut state.redis(), &state.keys)).await.unwrap_or_default();
        let hello = ServerFrame::Hello {
            user: ident.user_ref(),
            epoch,
            conversation: ident.own_conversation().map(str::to_string),
            node: Some(state.node.clone()),
        };
        handle.push(Out::Frame(hello.to_json().into()));
        let mut writer = tokio::spawn(write_loop(state.clone(), rx, wr, kill.clone(), close_code.clone()));
        let mut session = Session::default();
        read_loop(&state, rd, &ident, &handle, &mut session, &slot).await;
        kill.cancel();
        // The writer sees `kill` between writes; one blocked on a client
        // that stopped reading would never see it (and would keep its
        // frames): past the grace it is aborted, its memory freed.
        if tokio::time::timeout(WRITER_GRACE, &mut writer).await.is_err() {
            writer.abort();
        }
        Box::pin(presence::unregister(&state, &ident, &handle, &session.watched, subscribed)).await;
    }
    .instrument(span)
    .await
}

async fn read_loop(state: &AppState, rd: Reader, ident: &Identity, h: &ConnHandle, session: &mut Session, slot: &Slot) {
    let idle = Duration::from_secs(state.cfg.idle_timeout_secs.max(1));
    let rate = state.cfg.send_rate.max(1) as f64;
    let mut writes = Bucket::new(rate, rate * 2.0);
    let mut all = Bucket::new(rate * 5.0, rate * 10.0);
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
                h.close_code.store(close::GOING_AWAY, Ordering::Relaxed);
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
                h.close_code.store(close::POLICY, Ordering::Relaxed);
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
        // Per socket, then per identity (all its sockets on this node).
        if is_write && !(writes.take() && slot.take_send()) {
            strikes += 1;
            if strikes > MAX_STRIKES {
                h.close_code.store(close::POLICY, Ordering::Relaxed);
                return;
            }
            reply_err(h, rid, FrameError::new(ErrorCode::RateLimited, "sending too fast: wait a moment and retry"));
            continue;
        }
        strikes = 0;
        let result = match cf {
            ClientFrame::Ping => Ok(Some(ServerFrame::Pong)),
            // Boxed: see `serve`.
            cf => Box::pin(cmd::dispatch(Ctx { state, ident, h, rid: rid.clone() }, cf, session)).await,
        };
        match result {
            Ok(Some(f)) => reply(h, f),
            Ok(None) => {}
            Err(e) => reply_err(h, rid, e.to_frame_error()),
        }
    }
}


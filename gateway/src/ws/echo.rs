//! The test-only echo route (`CHAT_TEST_ECHO=1`, `/ws-echo`) for the
//! Autobahn suite: the same reader and writer, echoing every message.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::reader::{obligated_sender, End, Message, MessageReader};
use super::wbuf::LazyBufWriter;
use super::writer::write_loop;
use crate::hub::{close, Out};
use crate::state::AppState;

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
    let close_code = Arc::new(AtomicU16::new(close::NORMAL));
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


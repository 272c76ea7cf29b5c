//! Reading a socket: whole messages out of RFC 6455 frames (fragments
//! reassembled under a cap on the whole message, UTF-8 of text checked),
//! protocol violations mapped to their close codes (section 7.4.1), and the
//! pong and close replies the reader owes, sent through the writer.

use fastwebsockets::{Frame, OpCode, WebSocketError};
use tokio::sync::mpsc;

use super::Reader;
use crate::hub::{close, Out};

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


/// Pong and close replies owed by the reader go through the write task, the
/// socket's only writer.
pub fn obligated_sender(tx: mpsc::Sender<Out>) -> impl FnMut(Frame<'_>) -> std::future::Ready<Result<(), std::io::Error>> {
    move |f: Frame<'_>| {
        let out = match f.opcode {
            OpCode::Pong => Some(Out::Pong(f.payload.to_vec())),
            // Control frames carry at most 125 bytes (RFC 6455 5.5); the
            // library checks pings only, so an oversized close is answered here.
            OpCode::Close if f.payload.len() > 125 => Some(Out::CloseRaw(close::PROTOCOL.to_be_bytes().to_vec())),
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
                Err(WebSocketError::FrameTooLarge) => return Err(End::Close(close::TOO_BIG)),
                Err(WebSocketError::InvalidUTF8) => return Err(End::Close(close::BAD_DATA)),
                Err(WebSocketError::IoError(_) | WebSocketError::UnexpectedEOF | WebSocketError::ConnectionClosed) => {
                    return Err(End::Gone)
                }
                // Reserved bits, bad opcodes, bad close frames, fragmented control frames...
                Err(e) => {
                    tracing::debug!(error = %e, "protocol error");
                    return Err(End::Close(close::PROTOCOL));
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
                            return Err(End::Close(close::TOO_BIG));
                        }
                        self.partial = Some((text, frame.payload.to_vec()));
                        continue;
                    }
                    (text, frame.payload.to_vec())
                }
                (OpCode::Continuation, Some((_, buf))) => {
                    if buf.len() + frame.payload.len() > self.max {
                        return Err(End::Close(close::TOO_BIG));
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
                _ => return Err(End::Close(close::PROTOCOL)),
            };
            if text {
                if std::str::from_utf8(&data).is_err() {
                    return Err(End::Close(close::BAD_DATA));
                }
                return Ok(Message::Text(data));
            }
            return Ok(Message::Binary(data));
        }
    }
}


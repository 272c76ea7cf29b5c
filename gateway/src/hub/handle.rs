//! A socket as the rest of the node sees it: its outbound queue ([`Out`],
//! consumed in order by the socket's write task) and how to close it.

use std::sync::atomic::AtomicU16;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// `Out::Event::floor` when the node has not relayed the conversation before.
pub const NO_FLOOR: u64 = u64::MAX;

/// What a socket's write task consumes, in order.
#[derive(Debug)]
pub enum Out {
    /// A frame outside any conversation's event sequence (ack, error, typing, receipt...).
    Frame(Arc<str>),
    /// Several such frames, in order, shared by every socket they go to
    /// (a flush of chat-list rows: one queue item per socket, not one per row).
    Frames(Arc<[Arc<str>]>),
    /// A positioned event of a conversation: subject to dedupe and gap filling.
    /// `floor`: the highest position of the conversation this node had relayed
    /// from the same stream before this event ([`NO_FLOOR`]: unknown).
    Event { conv: Arc<str>, pos: u64, frame: Arc<str>, floor: u64 },
    /// The client asked to resume from these positions (obtained in `epoch`).
    Resume(Vec<(String, u64)>, Option<String>),
    /// The socket starts watching a conversation: hold its live events until
    /// the `Resume` that follows has replayed what came before them.
    Watch(Arc<str>),
    /// The socket stopped watching a conversation: forget its position.
    Unwatch(Arc<str>),
    /// The client's first frame was not a resume: deliver buffered live events now.
    Open,
    /// A message echoed as-is (test-only echo route): text or binary.
    Echo(bool, Vec<u8>),
    /// A pong owed to a client ping.
    Pong(Vec<u8>),
    /// The reply to a client's close frame; the socket ends after it.
    CloseRaw(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct ConnHandle {
    pub id: u64,
    pub tx: mpsc::Sender<Out>,
    /// Cancelled to drop the socket at once (slow consumer).
    pub kill: CancellationToken,
    /// Close code the write task sends when the socket ends.
    pub close_code: Arc<AtomicU16>,
    /// The agent session the socket was opened with (its token hash), so
    /// that revoking the session closes it.
    pub session: Option<Arc<str>>,
}

impl ConnHandle {
    /// Queues a frame; a full queue marks the socket a slow consumer and drops it.
    pub fn push(&self, out: Out) -> bool {
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!(crate::metrics::SLOW_CONSUMERS).increment(1);
                self.close(super::close::SLOW_CONSUMER);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Drops the socket at once; its write task sends a close frame with `code`.
    pub fn close(&self, code: u16) {
        self.close_code.store(code, std::sync::atomic::Ordering::Relaxed);
        self.kill.cancel();
    }
}


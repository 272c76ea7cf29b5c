//! One file per client frame (as mini-redis's `cmd/`): each checks what the
//! frame may do, applies it (through `domain`, `node` or the socket's
//! writer) and returns the reply frame, if any. The socket's read loop
//! (`ws::socket`) knows frames, not commands: it calls [`dispatch`].

pub mod edit;
pub mod ping;
pub mod react;
pub mod receipts;
pub mod resume;
pub mod send;
pub mod typing;
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use schema::frames::{ClientFrame, FrameError, ServerFrame};

use crate::error::GatewayError;
use crate::hub::{ConnHandle, Out};
use crate::identity::Identity;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// What one socket's commands remember between frames.
#[derive(Default)]
pub struct Session {
    /// The conversations this agent socket watches.
    pub watched: HashSet<String>,
    /// When this socket last relayed typing, per conversation.
    typing_at: HashMap<String, Instant>,
}

/// The socket a command runs for.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub ident: &'a Identity,
    pub h: &'a ConnHandle,
    pub rid: Option<String>,
}

pub fn reply(h: &ConnHandle, f: ServerFrame) {
    h.push(Out::Frame(f.to_json().into()));
}

pub fn reply_err(h: &ConnHandle, rid: Option<String>, e: FrameError) {
    metrics::counter!(crate::metrics::ERRORS, "code" => e.code.as_str()).increment(1);
    reply(h, ServerFrame::error(rid, e));
}

/// Runs one client frame's command; `Ok(Some(frame))` is the reply.
pub async fn dispatch(cx: Ctx<'_>, cf: ClientFrame, session: &mut Session) -> Result<Option<ServerFrame>> {
    match cf {
        ClientFrame::Ping => Ok(Some(ping::apply())),
        ClientFrame::Resume { positions, epoch } => resume::apply(&cx, positions, epoch, &mut session.watched).await,
        ClientFrame::Watch { conversation, after } => watch::watch(&cx, conversation, after, &mut session.watched).await,
        ClientFrame::Unwatch { conversation } => watch::unwatch(&cx, conversation, &mut session.watched).await,
        ClientFrame::Send { conversation, client_id, text, reply_to, attachments } => {
            send::apply(&cx, conversation, client_id, text, reply_to, attachments).await.map(Some)
        }
        ClientFrame::Edit { conversation, seq, text } => edit::apply(&cx, conversation, seq, Some(text)).await.map(Some),
        ClientFrame::Delete { conversation, seq } => edit::apply(&cx, conversation, seq, None).await.map(Some),
        ClientFrame::React { conversation, seq, emoji, on } => react::apply(&cx, conversation, seq, emoji, on).await.map(Some),
        ClientFrame::Delivered { conversation, seq } => receipts::apply(&cx, conversation, seq, false).await,
        ClientFrame::Seen { conversation, seq } => receipts::apply(&cx, conversation, seq, true).await,
        ClientFrame::Typing { conversation } => typing::apply(&cx, conversation, &mut session.typing_at).await,
    }
}

//! `send`: a message from the socket's user -> `ack` with its position.

use std::time::Instant;

use schema::frames::{MessageKind, ServerFrame, Side};

use super::{Ctx, Result};
use crate::domain::messages::{post_message, NewMessage};
use crate::identity::authorize;

pub async fn apply(cx: &Ctx<'_>, conv: String, client_id: String, text: String, reply_to: Option<u64>) -> Result<ServerFrame> {
    let ident = cx.ident;
    authorize(ident, &conv)?;
    let started = Instant::now();
    let kind = match ident.kind.side() {
        Side::Customer => MessageKind::Customer,
        Side::Staff => MessageKind::Staff,
    };
    let p = post_message(
        cx.state,
        NewMessage { conv: &conv, kind, author: Some(ident.user_ref()), text: &text, reply_to, client_id: &client_id, order_json: None },
    )
    .await?;
    metrics::histogram!(crate::metrics::SEND_ACK_SECONDS).record(started.elapsed().as_secs_f64());
    Ok(ServerFrame::Ack { rid: cx.rid.clone(), conversation: conv, seq: p.seq, ts: p.ts, pos: Some(p.seq), duplicate: p.duplicate })
}

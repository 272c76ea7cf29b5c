//! `send`: a message from the socket's user -> `ack` with its position.
//! Attachments are the sender's own uploads, claimed for this message
//! first (a plain text message costs nothing more).

use std::time::Instant;

use schema::frames::{MessageKind, ServerFrame, Side};

use super::{Ctx, Result};
use crate::domain::attachments;
use crate::domain::messages::{post_message, NewMessage};
use crate::identity::authorize;

pub async fn apply(
    cx: &Ctx<'_>,
    conv: String,
    client_id: String,
    text: String,
    reply_to: Option<u64>,
    attachment_ids: Vec<String>,
) -> Result<ServerFrame> {
    let ident = cx.ident;
    authorize(ident, &conv)?;
    let started = Instant::now();
    let kind = match ident.kind.side() {
        Side::Customer => MessageKind::Customer,
        Side::Staff => MessageKind::Staff,
    };
    let files = attachments::claim(cx.state, ident, &conv, &client_id, &attachment_ids).await?;
    let p = post_message(
        cx.state,
        NewMessage {
            conv: &conv,
            kind,
            author: Some(ident.user_ref()),
            text: &text,
            reply_to,
            client_id: &client_id,
            order_json: None,
            attachments: files,
        },
    )
    .await?;
    metrics::histogram!(crate::metrics::SEND_ACK_SECONDS).record(started.elapsed().as_secs_f64());
    Ok(ServerFrame::Ack { rid: cx.rid.clone(), conversation: conv, seq: p.seq, ts: p.ts, pos: Some(p.seq), duplicate: p.duplicate })
}

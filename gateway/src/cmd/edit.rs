//! `edit` and `delete` of a message (its author's side only) -> `ack`.

use schema::frames::ServerFrame;

use super::{Ctx, Result};
use crate::domain::messages::edit_or_delete;
use crate::identity::authorize;

/// `new_text`: `Some` for an edit, `None` for a delete.
pub async fn apply(cx: &Ctx<'_>, conv: String, seq: u64, new_text: Option<String>) -> Result<ServerFrame> {
    authorize(cx.ident, &conv)?;
    let c = edit_or_delete(cx.state, cx.ident, conv.clone(), seq, new_text).await?;
    Ok(ServerFrame::Ack { rid: cx.rid.clone(), conversation: conv, seq, ts: c.ts, pos: c.pos, duplicate: false })
}

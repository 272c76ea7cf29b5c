//! `delivered` and `seen`: read receipts -> `ack` when the frame has a `rid`
//! (`duplicate` when nothing changed).

use schema::frames::ServerFrame;

use super::{Ctx, Result};
use crate::domain::receipts::read_state;
use crate::identity::authorize;

pub async fn apply(cx: &Ctx<'_>, conv: String, seq: u64, seen: bool) -> Result<Option<ServerFrame>> {
    authorize(cx.ident, &conv)?;
    let changed = read_state(cx.state, cx.ident, conv.clone(), seq, seen).await?;
    Ok(cx.rid.clone().map(|rid| ServerFrame::Ack { rid: Some(rid), conversation: conv, seq, ts: schema::now_ms(), pos: None, duplicate: !changed }))
}

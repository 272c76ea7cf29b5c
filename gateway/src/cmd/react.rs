//! `react`: one reaction on or off -> `ack` (`duplicate` when it was
//! already in that state).

use schema::frames::{Emoji, ServerFrame};

use super::{Ctx, Result};
use crate::domain::messages::react;
use crate::identity::authorize;

pub async fn apply(cx: &Ctx<'_>, conv: String, seq: u64, emoji: Emoji, on: bool) -> Result<ServerFrame> {
    authorize(cx.ident, &conv)?;
    let c = react(cx.state, cx.ident, conv.clone(), seq, emoji, on).await?;
    Ok(ServerFrame::Ack { rid: cx.rid.clone(), conversation: conv, seq, ts: c.ts, pos: c.pos, duplicate: c.pos.is_none() })
}

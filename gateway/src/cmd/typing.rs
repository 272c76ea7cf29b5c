//! `typing`: relayed to the other side only (a customer's to the agents
//! watching the conversation), never stored; at most one relay per
//! conversation every 1.5 s per socket, extra frames dropped quietly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use schema::envelope::Audience;
use schema::frames::ServerFrame;
use schema::limits::TYPING_TTL_MS;

use super::{Ctx, Result};
use crate::identity::authorize;

const EVERY: Duration = Duration::from_millis(1500);

pub async fn apply(cx: &Ctx<'_>, conv: String, typing_at: &mut HashMap<String, Instant>) -> Result<Option<ServerFrame>> {
    let now = Instant::now();
    let due = typing_at.get(&conv).is_none_or(|t| now.duration_since(*t) >= EVERY);
    if !due {
        return Ok(None);
    }
    if typing_at.len() > 1000 {
        typing_at.clear();
    }
    typing_at.insert(conv.clone(), now);
    let ident = cx.ident;
    authorize(ident, &conv)?;
    let frame = ServerFrame::Typing { conversation: conv.clone(), who: ident.user_ref(), expires_in_ms: TYPING_TTL_MS }.to_json();
    let audience = Audience::to_side(ident.kind.side().other());
    cx.state.broker().relay_frame(audience, &conv, frame).await?;
    Ok(None)
}

//! `watch` and `unwatch` (agents only): receive a conversation's live events
//! on this socket, from position `after` (replayed first), or stop.

use std::collections::HashSet;

use schema::frames::{ServerFrame, MAX_WATCHED};

use super::{Ctx, Result};
use crate::domain::conversations::ensure_conversation;
use crate::error::GatewayError;
use crate::hub::Out;
use crate::node::watch::{unwatch_all, watch_all};

pub async fn watch(cx: &Ctx<'_>, conversation: String, after: u64, watched: &mut HashSet<String>) -> Result<Option<ServerFrame>> {
    if !cx.ident.is_agent() {
        return Err(GatewayError::forbidden("watch: customers receive their own conversation without it"));
    }
    if !watched.contains(&conversation) {
        if watched.len() >= MAX_WATCHED {
            return Err(GatewayError::invalid(format!("watch: at most {MAX_WATCHED} conversations per socket; unwatch one first")));
        }
        ensure_conversation(cx.state, &conversation).await?;
        watch_all(cx.state, cx.h, std::slice::from_ref(&conversation), watched).await?;
    }
    cx.h.push(Out::Resume(vec![(conversation, after)], None));
    Ok(None)
}

pub async fn unwatch(cx: &Ctx<'_>, conversation: String, watched: &mut HashSet<String>) -> Result<Option<ServerFrame>> {
    if !cx.ident.is_agent() {
        return Err(GatewayError::forbidden("unwatch: customers receive their own conversation"));
    }
    if watched.remove(&conversation) {
        unwatch_all(cx.state, cx.h, std::iter::once(conversation.as_str()));
    }
    Ok(cx.rid.clone().map(|rid| ServerFrame::Ack { rid: Some(rid), conversation, seq: 0, ts: schema::now_ms(), pos: None, duplicate: false }))
}

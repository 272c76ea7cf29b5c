//! `resume`: replay what the client missed, per conversation, from its last
//! positions. An agent also watches what it resumes (up to `MAX_WATCHED`).
//! The replay itself runs in the socket's writer (`Out::Resume`), in order
//! with the live events it holds.

use std::collections::HashSet;

use schema::frames::{FrameError, ServerFrame, MAX_WATCHED};

use super::{reply_err, Ctx, Result};
use crate::hub::Out;
use crate::identity::authorize;
use crate::node::watch::watch_all;

pub async fn apply(cx: &Ctx<'_>, positions: Vec<(String, u64)>, epoch: Option<String>, watched: &mut HashSet<String>) -> Result<Option<ServerFrame>> {
    let (state, ident, h, rid) = (cx.state, cx.ident, cx.h, &cx.rid);
    let mut ok = Vec::with_capacity(positions.len());
    for (conv, pos) in positions {
        match authorize(ident, &conv) {
            Ok(()) => ok.push((conv, pos)),
            Err(e) => reply_err(h, rid.clone(), e.to_frame_error()),
        }
    }
    // An agent resumes the conversations it holds: it watches them.
    if ident.is_agent() {
        let mut new = Vec::new();
        let mut over = 0;
        for (c, _) in &ok {
            if watched.contains(c) || new.contains(c) {
                continue;
            }
            if watched.len() + new.len() >= MAX_WATCHED {
                over += 1;
            } else {
                new.push(c.clone());
            }
        }
        if over > 0 {
            let msg = format!("watching at most {MAX_WATCHED} conversations: {over} resumed but not watched");
            reply_err(h, rid.clone(), FrameError::invalid(msg));
        }
        if let Err(e) = watch_all(state, h, &new, watched).await {
            reply_err(h, rid.clone(), e.to_frame_error());
        }
    }
    h.push(Out::Resume(ok, epoch));
    Ok(None)
}

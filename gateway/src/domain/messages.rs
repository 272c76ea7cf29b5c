//! Messages: posting one (the send path shared by client sends, system
//! messages, order cards and the dev seed), editing, deleting and reacting.
//! Each runs one script on the conversation's slot, then publishes (log
//! shard + the inboxes of the nodes holding the customer or agents watching
//! the conversation) in one pipelined round trip. Authorization is the
//! caller's (a client frame's command, a REST route).

use std::collections::BTreeMap;

use redis::AsyncCommands;
use redis_conn::{Call, LuaScript};
use schema::envelope::{Audience, LogEvent, Relay};
use schema::frames::{CustomerRef, Emoji, ErrorCode, Message, MessageKind, ReplyRef, ServerFrame, UserRef};
use schema::limits::EXCERPT_CHARS;

use super::conversations::{customer_ref, ensure_conversation, seed_conversation};
use crate::broker::meta::Meta;
use crate::broker::replies::{MutateReply, OnMessage, ReactReply, Refusal, SendReply};
use crate::error::GatewayError;
use crate::identity::Identity;
use crate::broker::template::{subst, with_reactions};
use crate::broker::Publish;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Result of posting a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    pub seq: u64,
    pub ts: i64,
    pub duplicate: bool,
}

/// A message to post into a conversation.
pub struct NewMessage<'a> {
    pub conv: &'a str,
    pub kind: MessageKind,
    pub author: Option<UserRef>,
    pub text: &'a str,
    pub reply_to: Option<u64>,
    pub client_id: &'a str,
    pub order_json: Option<String>,
}

/// Looks up what a reply quotes: Redis first, then the SQL record.
async fn reply_excerpt(state: &AppState, conv: &str, seq: u64) -> Result<ReplyRef> {
    let mut conn = state.redis();
    let m: Option<String> = conn.hget(state.keys.meta(conv), seq).await?;
    let excerpt = match m.as_deref().and_then(Meta::parse) {
        Some(m) if m.deleted => "Message deleted".to_string(),
        Some(m) => m.excerpt,
        None => match state.store.message_meta(conv, seq).await? {
            Some(meta) if meta.deleted => "Message deleted".to_string(),
            Some(meta) => meta.excerpt,
            None => return Err(GatewayError::not_found(format!("reply_to: no message {seq} in this conversation"))),
        },
    };
    Ok(ReplyRef { seq, excerpt })
}

/// The send path shared by client sends, system messages, order cards and the dev seed.
pub async fn post_message(state: &AppState, m: NewMessage<'_>) -> Result<Posted> {
    let reply = match m.reply_to {
        Some(s) => Some(reply_excerpt(state, m.conv, s).await?),
        None => None,
    };
    let ts = schema::now_ms();
    let order = match &m.order_json {
        Some(j) => serde_json::from_str(j).ok(),
        None => None,
    };
    let message = Message {
        seq: 0,
        kind: m.kind,
        author: m.author.clone(),
        text: m.text.to_string(),
        reply_to: reply.clone(),
        ts,
        edited_at: None,
        deleted: false,
        reactions: BTreeMap::new(),
        order,
        client_id: Some(m.client_id.to_string()),
    };
    let template = ServerFrame::Message { conversation: m.conv.to_string(), pos: 0, message }.to_json();
    let excerpt = schema::excerpt(m.text, EXCERPT_CHARS);
    let k = &state.keys;
    let client_id = Some(m.client_id.to_string());
    let call = Call::new()
        .key(k.seq(m.conv))
        .key(k.dedupe(m.conv, m.client_id))
        .key(k.replay(m.conv))
        .key(k.meta(m.conv))
        .key(k.customer_nodes(m.conv))
        .key(k.customer(m.conv))
        .key(k.watchers(m.conv))
        .arg(ts)
        .arg(Meta::side_of(m.kind))
        .arg(&excerpt)
        .arg(&template)
        .arg(state.cfg.dedupe_ttl_secs)
        .arg(state.cfg.replay_len)
        .arg(state.cfg.replay_ttl_secs);
    let mut retried = false;
    loop {
        let (sent, duplicate) = match state.broker().run::<SendReply>(&state.scripts.send, &call).await? {
            SendReply::Ok(s) => (s, false),
            SendReply::Duplicate(s) => (s, true),
            r @ (SendReply::NoConversation | SendReply::NoSequence) if !retried => {
                retried = true;
                ensure_conversation(state, m.conv).await?;
                if matches!(r, SendReply::NoSequence) {
                    let c = customer_ref(state, m.conv).await?;
                    seed_conversation(state, m.conv, &c.username, c.avatar_url.as_deref()).await?;
                }
                continue;
            }
            SendReply::NoConversation | SendReply::NoSequence => {
                return Err(GatewayError::not_found(format!("no conversation `{}`", m.conv)))
            }
            SendReply::Unexpected(other) => {
                tracing::error!(status = other, "send script: unexpected status");
                return Err(GatewayError::client(ErrorCode::Unavailable, "could not send, retry"));
            }
        };
        let (seq, ts) = (sent.seq, sent.ts);
        let customer = CustomerRef {
            id: m.conv.to_string(),
            username: sent.username.clone().unwrap_or_else(|| m.conv.to_string()),
            avatar_url: sent.avatar_url.clone().filter(|a| !a.is_empty()),
        };
        let ev = LogEvent::Message {
            conversation: m.conv.to_string(),
            customer,
            seq,
            ts,
            kind: m.kind,
            author: m.author.clone(),
            text: m.text.to_string(),
            reply_to: reply.clone(),
            client_id: client_id.clone(),
            order_json: m.order_json.clone(),
        };
        if duplicate {
            // The first attempt may have died before its log entry: log again
            // (the worker's insert is idempotent), but relay nothing twice.
            state.broker().publish(Publish { log: Some(&ev), relay: None }).await?;
        } else {
            let frame = subst(&subst(&template, "pos", seq), "seq", seq);
            let relay = Relay { audience: Audience::Both, conversation: Some(m.conv.to_string()), pos: seq, frame };
            state.broker().publish(Publish { log: Some(&ev), relay: Some((&relay, &sent.targets)) }).await?;
        }
        return Ok(Posted { seq, ts, duplicate });
    }
}

/// Loads a message's metadata from the SQL record into Redis after Redis lost it.
/// Returns false when the message does not exist.
async fn restore_meta(state: &AppState, conv: &str, seq: u64) -> Result<bool> {
    match state.store.message_meta(conv, seq).await? {
        Some(meta) => {
            let v = Meta { side: Meta::side_of(meta.kind).to_string(), deleted: meta.deleted, excerpt: meta.excerpt }.encode();
            let mut conn = state.redis();
            let _: () = conn.hset_nx(state.keys.meta(conv), seq, v).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn meta_error(r: &Refusal, seq: u64, action: &str) -> GatewayError {
    match r {
        Refusal::Deleted => GatewayError::not_found(format!("message {seq} was deleted")),
        Refusal::Forbidden => GatewayError::forbidden(format!("only the author's side may {action} message {seq}")),
        _ => GatewayError::not_found(format!("no message {seq} in this conversation")),
    }
}

/// A positioned change of a message (edit, delete, reaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub ts: i64,
    /// `None`: nothing changed (a reaction already in that state).
    pub pos: Option<u64>,
}

/// Edits (`new_text`) or deletes a message; only its author's side may.
pub async fn edit_or_delete(state: &AppState, ident: &Identity, conv: String, seq: u64, new_text: Option<String>) -> Result<Changed> {
    let ts = schema::now_ms();
    let side = ident.kind.side();
    let (mode, frame, excerpt) = match &new_text {
        Some(t) => (
            "edit",
            ServerFrame::Edited { conversation: conv.clone(), pos: 0, seq, text: t.clone(), edited_at: ts }.to_json(),
            schema::excerpt(t, EXCERPT_CHARS),
        ),
        None => ("delete", ServerFrame::Deleted { conversation: conv.clone(), pos: 0, seq }.to_json(), String::new()),
    };
    let k = &state.keys;
    let call = Call::new()
        .key(k.seq(&conv))
        .key(k.replay(&conv))
        .key(k.meta(&conv))
        .key(k.customer_nodes(&conv))
        .key(k.watchers(&conv))
        .arg(seq)
        .arg(side.as_str())
        .arg(mode)
        .arg(&excerpt)
        .arg(&frame)
        .arg(state.cfg.replay_len)
        .arg(state.cfg.replay_ttl_secs);
    let (pos, targets) = match eval_on_message::<MutateReply>(state, &state.scripts.mutate, &call, &conv, seq).await? {
        MutateReply::Ok { pos, targets } => (pos, targets),
        MutateReply::Refused(r) => return Err(meta_error(&r, seq, mode)),
    };
    let by = ident.user_ref();
    let ev = match &new_text {
        Some(t) => LogEvent::Edit { conversation: conv.clone(), pos, seq, text: t.clone(), edited_at: ts, by },
        None => LogEvent::Delete { conversation: conv.clone(), pos, seq, ts, by },
    };
    let relay = Relay { audience: Audience::Both, conversation: Some(conv.clone()), pos, frame: subst(&frame, "pos", pos) };
    state.broker().publish(Publish { log: Some(&ev), relay: Some((&relay, &targets)) }).await?;
    Ok(Changed { ts, pos: Some(pos) })
}

/// Runs a script about one message; when Redis has lost the message's
/// metadata, restores it once from the SQL record and runs it again.
async fn eval_on_message<T: redis::FromRedisValue + OnMessage>(state: &AppState, script: &LuaScript, call: &Call, conv: &str, seq: u64) -> Result<T> {
    let first: T = state.broker().run(script, call).await?;
    if first.not_found() && restore_meta(state, conv, seq).await? {
        return state.broker().run(script, call).await;
    }
    Ok(first)
}

/// Turns one reaction of `ident` on a message on or off.
pub async fn react(state: &AppState, ident: &Identity, conv: String, seq: u64, emoji: Emoji, on: bool) -> Result<Changed> {
    let ts = schema::now_ms();
    let by = ident.user_ref();
    let frame = ServerFrame::Reactions {
        conversation: conv.clone(),
        pos: 0,
        seq,
        reactions: BTreeMap::new(),
        by: by.clone(),
        emoji,
        on,
    }
    .to_json();
    let member = format!("{}:{}:{}", side_of(ident), ident.id, emoji.as_str());
    let k = &state.keys;
    let call = Call::new()
        .key(k.seq(&conv))
        .key(k.replay(&conv))
        .key(k.meta(&conv))
        .key(k.customer_nodes(&conv))
        .key(k.reactions(&conv, seq))
        .key(k.reactors(&conv, seq))
        .key(k.watchers(&conv))
        .arg(seq)
        .arg(&member)
        .arg(emoji.as_str())
        .arg(if on { "1" } else { "0" })
        .arg(&frame)
        .arg(state.cfg.replay_len)
        .arg(state.cfg.replay_ttl_secs);
    let (pos, rx, targets) = match eval_on_message::<ReactReply>(state, &state.scripts.react, &call, &conv, seq).await? {
        // Already in that state: nothing changes, nothing is relayed.
        ReactReply::Noop => return Ok(Changed { ts, pos: None }),
        ReactReply::Ok { pos, reactions, targets } => (pos, reactions, targets),
        ReactReply::Refused(r) => return Err(meta_error(&r, seq, "react to")),
    };
    let f = with_reactions(&subst(&frame, "pos", pos), &rx);
    let ev = LogEvent::React { conversation: conv.clone(), pos, seq, emoji, on, by, ts };
    let relay = Relay { audience: Audience::Both, conversation: Some(conv.clone()), pos, frame: f };
    state.broker().publish(Publish { log: Some(&ev), relay: Some((&relay, &targets)) }).await?;
    Ok(Changed { ts, pos: Some(pos) })
}

fn side_of(ident: &Identity) -> &'static str {
    ident.kind.side().as_str()
}


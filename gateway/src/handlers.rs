//! One handler per client frame type. Each validates authorization, runs one
//! script on the conversation's slot, then publishes (log shard + the inboxes
//! of the nodes holding the customer or agents watching the conversation) in
//! one pipelined round trip, and answers `ack` or an error.

use std::collections::BTreeMap;
use std::time::Instant;

use redis::AsyncCommands;
use redis_conn::{Call, LuaScript};
use schema::envelope::{Audience, LogEvent, Relay};
use schema::frames::{
    CustomerRef, Emoji, ErrorCode, Message, MessageKind, ReplyRef, ServerFrame, Side, UserRef,
};
use schema::limits::{EXCERPT_CHARS, TYPING_TTL_MS};

use crate::auth::{ensure_conversation, seed_conversation};
use crate::error::GatewayError;
use crate::registry::Identity;
use crate::broker::meta::Meta;
use crate::broker::replies::{MutateReply, OnMessage, ReactReply, ReadReply, Refusal, SendReply};
use crate::broker::template::{subst, with_reactions};
use crate::broker::Publish;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Customers act only on their own conversation.
pub fn authorize(ident: &Identity, conv: &str) -> Result<()> {
    match ident.own_conversation() {
        Some(own) if own != conv => Err(GatewayError::forbidden("customers may only use their own conversation")),
        _ => Ok(()),
    }
}

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

/// The customer of a conversation, from its Redis profile hash.
async fn customer_ref(state: &AppState, conv: &str) -> Result<CustomerRef> {
    let mut conn = state.redis();
    let (username, avatar): (Option<String>, Option<String>) =
        conn.hget(state.keys.customer(conv), &["username", "avatar_url"]).await?;
    Ok(CustomerRef {
        id: conv.to_string(),
        username: username.unwrap_or_else(|| conv.to_string()),
        avatar_url: avatar.filter(|a| !a.is_empty()),
    })
}

pub async fn send(
    state: &AppState,
    ident: &Identity,
    rid: Option<String>,
    conv: String,
    client_id: String,
    text: String,
    reply_to: Option<u64>,
) -> Result<ServerFrame> {
    authorize(ident, &conv)?;
    let started = Instant::now();
    let kind = match ident.kind.side() {
        Side::Customer => MessageKind::Customer,
        Side::Staff => MessageKind::Staff,
    };
    let p = post_message(
        state,
        NewMessage { conv: &conv, kind, author: Some(ident.user_ref()), text: &text, reply_to, client_id: &client_id, order_json: None },
    )
    .await?;
    metrics::histogram!(crate::metrics::SEND_ACK_SECONDS).record(started.elapsed().as_secs_f64());
    Ok(ServerFrame::Ack { rid, conversation: conv, seq: p.seq, ts: p.ts, pos: Some(p.seq), duplicate: p.duplicate })
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

pub async fn edit_or_delete(
    state: &AppState,
    ident: &Identity,
    rid: Option<String>,
    conv: String,
    seq: u64,
    new_text: Option<String>,
) -> Result<ServerFrame> {
    authorize(ident, &conv)?;
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
    Ok(ServerFrame::Ack { rid, conversation: conv, seq, ts, pos: Some(pos), duplicate: false })
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

pub async fn react(
    state: &AppState,
    ident: &Identity,
    rid: Option<String>,
    conv: String,
    seq: u64,
    emoji: Emoji,
    on: bool,
) -> Result<ServerFrame> {
    authorize(ident, &conv)?;
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
        ReactReply::Noop => return Ok(ServerFrame::Ack { rid, conversation: conv, seq, ts, pos: None, duplicate: true }),
        ReactReply::Ok { pos, reactions, targets } => (pos, reactions, targets),
        ReactReply::Refused(r) => return Err(meta_error(&r, seq, "react to")),
    };
    let f = with_reactions(&subst(&frame, "pos", pos), &rx);
    let ev = LogEvent::React { conversation: conv.clone(), pos, seq, emoji, on, by, ts };
    let relay = Relay { audience: Audience::Both, conversation: Some(conv.clone()), pos, frame: f };
    state.broker().publish(Publish { log: Some(&ev), relay: Some((&relay, &targets)) }).await?;
    Ok(ServerFrame::Ack { rid, conversation: conv, seq, ts, pos: Some(pos), duplicate: false })
}

fn side_of(ident: &Identity) -> &'static str {
    ident.kind.side().as_str()
}

/// `delivered` / `seen`: monotonic read state, a receipt to the other side, a log entry.
pub async fn read_state(
    state: &AppState,
    ident: &Identity,
    rid: Option<String>,
    conv: String,
    seq: u64,
    seen: bool,
) -> Result<Option<ServerFrame>> {
    authorize(ident, &conv)?;
    let side = ident.kind.side();
    // Staff delivery already recorded from this node: nothing can change.
    let known = |c: &str| state.staff_delivered.get(c).map(|v| *v).unwrap_or(0);
    if !seen && side == Side::Staff && seq <= known(&conv) {
        return Ok(rid.map(|rid| ServerFrame::Ack { rid: Some(rid), conversation: conv, seq, ts: schema::now_ms(), pos: None, duplicate: true }));
    }
    let (delivered, seen_seq) = if seen { (seq, seq) } else { (seq, 0) };
    let k = &state.keys;
    let call = Call::new()
        .key(k.read_state(&conv))
        .key(k.seq(&conv))
        .key(k.customer_nodes(&conv))
        .key(k.watchers(&conv))
        .arg(side.as_str())
        .arg(delivered)
        .arg(seen_seq);
    let (nd, ns, changed, targets) = match state.broker().run::<ReadReply>(&state.scripts.read, &call).await? {
        ReadReply::Ahead { current: cur } => {
            if cur == 0 && ident.is_agent() {
                ensure_conversation(state, &conv).await?;
            }
            return Err(GatewayError::invalid(format!("seq {seq} is beyond the conversation's last position {cur}")));
        }
        ReadReply::Ok { delivered, seen, changed, targets } => (delivered, seen, changed, targets),
    };
    if side == Side::Staff && nd > known(&conv) {
        // Bounded: forgetting only sends the next report to Redis.
        if state.staff_delivered.len() >= 100_000 {
            state.staff_delivered.clear();
        }
        state.staff_delivered.insert(conv.clone(), nd);
    }
    if changed {
        let ts = schema::now_ms();
        let receipt = ServerFrame::Receipt { conversation: conv.clone(), delivered_seq: nd, seen_seq: ns }.to_json();
        let audience = Audience::to_side(side.other());
        let relay = Relay { audience, conversation: Some(conv.clone()), pos: 0, frame: receipt };
        let ev = LogEvent::Read { conversation: conv.clone(), side, delivered: nd, seen: ns, ts };
        state.broker().publish(Publish { log: Some(&ev), relay: Some((&relay, &targets)) }).await?;
    }
    Ok(rid.map(|rid| ServerFrame::Ack { rid: Some(rid), conversation: conv, seq, ts: schema::now_ms(), pos: None, duplicate: !changed }))
}

/// Typing: relayed to the other side only (a customer's to the agents
/// watching the conversation), never stored.
pub async fn typing(state: &AppState, ident: &Identity, conv: String) -> Result<()> {
    authorize(ident, &conv)?;
    let frame = ServerFrame::Typing { conversation: conv.clone(), who: ident.user_ref(), expires_in_ms: TYPING_TTL_MS }.to_json();
    let audience = Audience::to_side(ident.kind.side().other());
    state.broker().relay_frame(audience, &conv, frame).await
}

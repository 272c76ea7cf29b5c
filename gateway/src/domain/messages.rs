//! Messages: posting one (the send path shared by client sends, system
//! messages, order cards and the dev seed), editing, deleting and reacting.
//! Each runs one script on the conversation's slot, which positions the
//! event, keeps it in the replay stream and publishes it on the
//! conversation's channel; a send also logs it (single Redis), the others
//! log in one more round trip. Authorization is the caller's (a client
//! frame's command, a REST route).

use std::collections::BTreeMap;

use redis::AsyncCommands;
use redis_conn::{Call, LuaScript};
use schema::envelope::{self, LogEvent};
use schema::keys;
use schema::frames::{Attachment, CustomerRef, Emoji, ErrorCode, Message, MessageKind, ReplyRef, ServerFrame, UserRef};
use schema::limits::EXCERPT_CHARS;

use super::conversations::repair_conversation;
use crate::broker::meta::Meta;
use crate::broker::replies::{MutateReply, OnMessage, ReactReply, Refusal, SendReply};
use crate::error::GatewayError;
use crate::identity::Identity;
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
    /// Uploads the author claimed for this message (`domain::attachments::claim`).
    pub attachments: Vec<Attachment>,
}

impl<'a> NewMessage<'a> {
    /// A system message (no author, no reply, no order card).
    pub fn system(conv: &'a str, text: &'a str, client_id: &'a str) -> Self {
        NewMessage { conv, kind: MessageKind::System, author: None, text, reply_to: None, client_id, order_json: None, attachments: Vec::new() }
    }
}

/// A message's meta value as Redis has it: the override hash (edits,
/// deletes, values restored from SQL), else the message's own replay entry
/// (field `m`, kept there by the send script).
async fn redis_meta(state: &AppState, conv: &str, seq: u64) -> Result<Option<String>> {
    let mut conn = state.redis();
    let m: Option<String> = conn.hget(state.keys.meta(conv), seq).await?;
    if m.is_some() {
        return Ok(m);
    }
    let id = keys::replay_id(seq);
    let r: redis::streams::StreamRangeReply = conn.xrange(state.keys.replay(conv), &id, &id).await?;
    Ok(r.ids.first().and_then(|e| e.get::<String>("m")))
}

/// Looks up what a reply quotes: Redis first, then the SQL record.
async fn reply_excerpt(state: &AppState, conv: &str, seq: u64) -> Result<ReplyRef> {
    let m = redis_meta(state, conv, seq).await?;
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

/// The dedupe field's name after `d:`: a `client_id` counts as a retry only
/// from the same sender (`customer:<id>:`, `agent:<id>:`), and server posts
/// (order cards, system messages, which have no author) have a scope of
/// their own (`srv:`) that no client can write. Before, a customer who sent
/// first with an order card's `client_id` (derivable from the order id)
/// made the card's post a "duplicate" of their own message: the card was
/// never posted. A colliding `client_id` from another sender is now simply
/// a distinct message.
pub fn dedupe_scope(author: Option<&UserRef>, client_id: &str) -> String {
    match author {
        Some(a) => {
            let kind = match a.kind {
                schema::frames::UserKind::Agent => "agent",
                schema::frames::UserKind::Customer => "customer",
            };
            format!("{kind}:{}:{client_id}", a.id)
        }
        None => format!("srv:{client_id}"),
    }
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
        attachments: m.attachments.clone(),
    };
    let template = ServerFrame::Message { conversation: m.conv.to_string(), pos: 0, message }.to_json();
    let excerpt = schema::frames::message_excerpt(m.text, &m.attachments);
    let meta = Meta { side: Meta::side_of(m.kind).to_string(), deleted: false, excerpt }.encode();
    let k = &state.keys;
    let client_id = Some(m.client_id.to_string());
    let event = |seq: u64, ts: i64, customer: CustomerRef| LogEvent::Message {
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
        attachments: m.attachments.clone(),
    };
    // On a single Redis the script logs the message too: the envelope goes
    // in with seq 0 and no profile, and the script adds both as fields of
    // the entry (`s`, `u`, `a`), which the worker applies. On a cluster the
    // log shard lives in another slot: logged in a second round trip.
    let single = !state.redis_target.is_cluster();
    let envelope = if single {
        envelope::encode(&event(0, ts, CustomerRef { id: m.conv.to_string(), username: String::new(), avatar_url: None }))
    } else {
        Vec::new()
    };
    let mut call = Call::new().key(k.state(m.conv)).key(k.replay(m.conv));
    if single {
        call = call.key(k.log(keys::shard_of(m.conv, state.cfg.log_shards)));
    }
    let call = call
        .arg(dedupe_scope(m.author.as_ref(), m.client_id))
        .arg(ts)
        .arg(&meta)
        .arg(&template)
        .arg(state.cfg.replay_len)
        .arg(state.cfg.replay_ttl_secs * 1000)
        .arg(k.channel(m.conv))
        .arg(&envelope)
        .arg(state.cfg.replay_len);
    let mut repaired = false;
    loop {
        let reply = if single && state.cfg.replica_acks() {
            run_replicated(state, &call).await?
        } else {
            state.broker().run::<SendReply>(&state.scripts.send, &call).await?
        };
        let (sent, duplicate) = match reply {
            SendReply::Ok(s) => (s, false),
            SendReply::Duplicate(s) => (s, true),
            SendReply::NoState if !repaired => {
                repaired = true;
                repair_conversation(state, m.conv).await?;
                continue;
            }
            SendReply::NoState => return Err(GatewayError::not_found(format!("no conversation `{}`", m.conv))),
            SendReply::Unexpected(other) => {
                tracing::error!(status = other, "send script: unexpected status");
                return Err(GatewayError::client(ErrorCode::Unavailable, "could not send, retry"));
            }
        };
        if !single {
            // Also on a duplicate: the first attempt may have died before its
            // log entry (the worker's insert is idempotent). A failed XADD
            // returns the error (`?`): the sender gets no ack, retries with the
            // same client_id, the script answers DUP with the same seq, and this
            // logs it again: an acked message is always logged (issue 20, #15;
            // argued, not tested with a node failure on a cluster).
            let customer = CustomerRef {
                id: m.conv.to_string(),
                username: if sent.username.is_empty() { m.conv.to_string() } else { sent.username.clone() },
                avatar_url: Some(sent.avatar_url.clone()).filter(|a| !a.is_empty()),
            };
            state.broker().publish(Publish { log: Some(&event(sent.seq, sent.ts, customer)), relay: None }).await?;
        }
        return Ok(Posted { seq: sent.seq, ts: sent.ts, duplicate });
    }
}

/// Sends refused because no replica confirmed them in time (kept here, not
/// in `metrics.rs`, which another change owns at the moment).
pub const ACK_UNREPLICATED: &str = "gateway_ack_unreplicated_total";

/// The send script and `WAIT 1 <CHAT_ACK_WAIT_MS>` in one pipeline, on the
/// one multiplexed connection: `WAIT` covers every write of that connection
/// so far, this script's included (and others' sent before it: conservative,
/// never too early). No replica confirming in time: `unavailable`; the
/// message may exist on the primary, and a retry with the same `client_id`
/// gets its seq (and waits for a replica again).
///
/// Cost while no replica answers: Redis blocks the whole connection during
/// a `WAIT`, so everything this gateway sends queues behind each one (up to
/// `CHAT_ACK_WAIT_MS`). With a healthy replica a `WAIT` returns within the
/// replica's round trip (BENCHMARKS.md, "Durable acks").
async fn run_replicated(state: &AppState, call: &Call) -> Result<SendReply> {
    let mut pipe = redis::pipe();
    state.scripts.send.push(&mut pipe, call);
    pipe.cmd("WAIT").arg(1).arg(state.cfg.ack_wait_ms);
    let started = std::time::Instant::now();
    let mut conn = state.redis();
    let (reply, replicas): (SendReply, i64) = redis_conn::script::query_pipeline(&mut conn, &pipe, &[&state.scripts.send]).await?;
    metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "script").record(started.elapsed().as_secs_f64());
    if replicas < 1 && matches!(reply, SendReply::Ok(_) | SendReply::Duplicate(_)) {
        metrics::counter!(ACK_UNREPLICATED).increment(1);
        tracing::warn!(conversation = ?call.keys().first(), "send not confirmed by a replica in time: unavailable");
        return Err(GatewayError::client(ErrorCode::Unavailable, "could not confirm the message on a replica, retry with the same client_id"));
    }
    Ok(reply)
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
        .key(k.state(&conv))
        .key(k.replay(&conv))
        .key(k.meta(&conv))
        .arg(seq)
        .arg(side.as_str())
        .arg(mode)
        .arg(&excerpt)
        .arg(&frame)
        .arg(state.cfg.replay_len)
        .arg(state.cfg.replay_ttl_secs)
        .arg(k.channel(&conv));
    let pos = match eval_on_message::<MutateReply>(state, &state.scripts.mutate, &call, &conv, seq).await? {
        MutateReply::Ok { pos } => pos,
        MutateReply::Refused(r) => return Err(meta_error(&r, seq, mode)),
    };
    let by = ident.user_ref();
    let ev = match &new_text {
        Some(t) => LogEvent::Edit { conversation: conv.clone(), pos, seq, text: t.clone(), edited_at: ts, by },
        None => LogEvent::Delete { conversation: conv.clone(), pos, seq, ts, by },
    };
    state.broker().publish(Publish { log: Some(&ev), relay: None }).await?;
    Ok(Changed { ts, pos: Some(pos) })
}

/// Runs a script about one message; when Redis has lost the message's
/// metadata, restores it from the SQL record, and when it has no state for
/// the conversation (lost, or expired while idle), seeds it; then runs it again.
async fn eval_on_message<T: redis::FromRedisValue + OnMessage>(state: &AppState, script: &LuaScript, call: &Call, conv: &str, seq: u64) -> Result<T> {
    let mut reply: T = state.broker().run(script, call).await?;
    for _ in 0..2 {
        match reply.refusal() {
            Some(Refusal::NotFound) if restore_meta(state, conv, seq).await? => {}
            Some(Refusal::NoState) => repair_conversation(state, conv).await?,
            _ => return Ok(reply),
        }
        reply = state.broker().run(script, call).await?;
    }
    Ok(reply)
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
        .key(k.state(&conv))
        .key(k.replay(&conv))
        .key(k.meta(&conv))
        .key(k.reactions(&conv, seq))
        .key(k.reactors(&conv, seq))
        .arg(seq)
        .arg(&member)
        .arg(emoji.as_str())
        .arg(if on { "1" } else { "0" })
        .arg(&frame)
        .arg(state.cfg.replay_len)
        .arg(state.cfg.replay_ttl_secs)
        .arg(k.channel(&conv));
    let pos = match eval_on_message::<ReactReply>(state, &state.scripts.react, &call, &conv, seq).await? {
        // Already in that state: nothing changes, nothing is relayed.
        ReactReply::Noop => return Ok(Changed { ts, pos: None }),
        ReactReply::Ok { pos, .. } => pos,
        ReactReply::Refused(r) => return Err(meta_error(&r, seq, "react to")),
    };
    let ev = LogEvent::React { conversation: conv.clone(), pos, seq, emoji, on, by, ts };
    state.broker().publish(Publish { log: Some(&ev), relay: None }).await?;
    Ok(Changed { ts, pos: Some(pos) })
}

fn side_of(ident: &Identity) -> &'static str {
    ident.kind.side().as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schema::frames::UserKind;

    #[test]
    fn dedupe_is_scoped_by_sender() {
        let cust = UserRef { kind: UserKind::Customer, id: "c1".into(), username: "rita".into() };
        let agent = UserRef { kind: UserKind::Agent, id: "c1".into(), username: "demo".into() };
        let a = dedupe_scope(Some(&cust), "x");
        assert_eq!(a, "customer:c1:x");
        assert_ne!(a, dedupe_scope(Some(&agent), "x"));
        assert_eq!(dedupe_scope(None, "x"), "srv:x");
    }
}


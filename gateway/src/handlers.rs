//! One handler per client frame type. Each validates authorization, runs one
//! script on the conversation's slot (which positions the event, keeps it in
//! the replay stream and publishes it on the conversation's channel; a send
//! also logs it for the worker, on a single Redis), logs what the script
//! could not in one more round trip, and answers `ack` or an error.

use std::collections::BTreeMap;
use std::time::Instant;

use redis::AsyncCommands;
use schema::envelope::{self, Audience, LogEvent, Relay};
use schema::keys;
use schema::frames::{
    CustomerRef, Emoji, ErrorCode, Message, MessageKind, ReplyRef, ServerFrame, Side, UserRef,
};
use schema::limits::{EXCERPT_CHARS, TYPING_TTL_MS};

use crate::auth::repair_conversation;
use crate::error::GatewayError;
use crate::registry::Identity;
use crate::relay::{self, int_at, publish, status, str_at, Call, LuaScript, Publish};
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Customers act only on their own conversation.
pub fn authorize(ident: &Identity, conv: &str) -> Result<()> {
    match ident.own_conversation() {
        Some(own) if own != conv => Err(GatewayError::forbidden("customers may only use their own conversation")),
        _ => Ok(()),
    }
}

fn side_str(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Customer => "customer",
        MessageKind::Staff => "staff",
        MessageKind::System | MessageKind::Order => "system",
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
    let m = redis_meta(state, conv, seq).await?;
    let excerpt = match m {
        Some(m) => {
            let mut parts = m.splitn(3, '|');
            let _side = parts.next();
            let deleted = parts.next() == Some("1");
            if deleted {
                "Message deleted".to_string()
            } else {
                parts.next().unwrap_or("").to_string()
            }
        }
        None => match state.store.message_meta(conv, seq).await? {
            Some(meta) if meta.deleted => "Message deleted".to_string(),
            Some(meta) => meta.excerpt,
            None => return Err(GatewayError::not_found(format!("reply_to: no message {seq} in this conversation"))),
        },
    };
    Ok(ReplyRef { seq, excerpt })
}

/// A message's metadata "side|deleted|excerpt" as Redis has it: the
/// override hash (edits, deletes, restored from SQL), else the message's own
/// replay entry (the send script keeps it there, field `m`).
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
    let meta = format!("{}|0|{}", side_str(m.kind), schema::excerpt(m.text, EXCERPT_CHARS));
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
    };
    // On a single Redis the script logs the message too: the envelope goes
    // in with seq 0 and no profile, and the script adds both as fields of
    // the entry (`s`, `u`, `a`), which the worker applies. A cluster keeps
    // the log shard in another slot: logged in a second round trip.
    let single = !state.redis_target.is_cluster();
    let envelope = if single {
        envelope::encode(&event(0, ts, CustomerRef { id: m.conv.to_string(), username: String::new(), avatar_url: None }))
    } else {
        Vec::new()
    };
    let mut repaired = false;
    loop {
        let mut call = Call::new().key(k.state(m.conv)).key(k.replay(m.conv));
        if single {
            call = call.key(k.log(keys::shard_of(m.conv, state.cfg.log_shards)));
        }
        call = call
            .arg(m.client_id)
            .arg(ts)
            .arg(&meta)
            .arg(&template)
            .arg(state.cfg.replay_len)
            .arg(state.cfg.replay_ttl_secs * 1000)
            .arg(k.channel(m.conv))
            .arg(&envelope)
            .arg(state.cfg.replay_len);
        let v = relay::eval(state, &state.scripts.send, &call).await?;
        let st = status(&v);
        match st.as_str() {
            "OK" | "DUP" => {
                let seq = int_at(&v, 1) as u64;
                let ts = int_at(&v, 2);
                let duplicate = st == "DUP";
                if !single {
                    // The first attempt may have died before its log entry:
                    // log again on a duplicate (the worker's insert is idempotent).
                    let username = str_at(&v, 3);
                    let avatar = str_at(&v, 4);
                    let customer = CustomerRef {
                        id: m.conv.to_string(),
                        username: if username.is_empty() { m.conv.to_string() } else { username },
                        avatar_url: Some(avatar).filter(|a| !a.is_empty()),
                    };
                    publish(state, Publish { log: Some(&event(seq, ts, customer)), relay: None }).await?;
                }
                return Ok(Posted { seq, ts, duplicate });
            }
            "NOSTATE" if !repaired => {
                repaired = true;
                repair_conversation(state, m.conv).await?;
            }
            "NOSTATE" => return Err(GatewayError::not_found(format!("no conversation `{}`", m.conv))),
            other => {
                tracing::error!(status = other, "send script: unexpected status");
                return Err(GatewayError::client(ErrorCode::Unavailable, "could not send, retry"));
            }
        }
    }
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
            let v = format!("{}|{}|{}", side_str(meta.kind), if meta.deleted { 1 } else { 0 }, meta.excerpt);
            let mut conn = state.redis();
            let _: () = conn.hset_nx(state.keys.meta(conv), seq, v).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn meta_error(st: &str, seq: u64, action: &str) -> GatewayError {
    match st {
        "DELETED" => GatewayError::not_found(format!("message {seq} was deleted")),
        "FORBIDDEN" => GatewayError::forbidden(format!("only the author's side may {action} message {seq}")),
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
    let v = eval_on_message(state, &state.scripts.mutate, &call, &conv, seq).await?;
    let st = status(&v);
    if st != "OK" {
        return Err(meta_error(&st, seq, mode));
    }
    let pos = int_at(&v, 1) as u64;
    let by = ident.user_ref();
    let ev = match &new_text {
        Some(t) => LogEvent::Edit { conversation: conv.clone(), pos, seq, text: t.clone(), edited_at: ts, by },
        None => LogEvent::Delete { conversation: conv.clone(), pos, seq, ts, by },
    };
    publish(state, Publish { log: Some(&ev), relay: None }).await?;
    Ok(ServerFrame::Ack { rid, conversation: conv, seq, ts, pos: Some(pos), duplicate: false })
}

/// Runs a script about one message; when Redis has lost the message's
/// metadata, restores it from the SQL record, and when it has lost the
/// conversation's state, seeds it again; then runs it again.
async fn eval_on_message(state: &AppState, script: &LuaScript, call: &Call, conv: &str, seq: u64) -> Result<Vec<redis::Value>> {
    let mut v = relay::eval(state, script, call).await?;
    for _ in 0..2 {
        match status(&v).as_str() {
            "NOTFOUND" if restore_meta(state, conv, seq).await? => {}
            "NOSTATE" => repair_conversation(state, conv).await?,
            _ => return Ok(v),
        }
        v = relay::eval(state, script, call).await?;
    }
    Ok(v)
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
    let v = eval_on_message(state, &state.scripts.react, &call, &conv, seq).await?;
    match status(&v).as_str() {
        // Already in that state: nothing changes, nothing is relayed.
        "NOOP" => return Ok(ServerFrame::Ack { rid, conversation: conv, seq, ts, pos: None, duplicate: true }),
        "OK" => {}
        st => return Err(meta_error(st, seq, "react to")),
    }
    let pos = int_at(&v, 1) as u64;
    let ev = LogEvent::React { conversation: conv.clone(), pos, seq, emoji, on, by, ts };
    publish(state, Publish { log: Some(&ev), relay: None }).await?;
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
    let call = Call::new().key(k.read_state(&conv)).key(k.state(&conv)).arg(side.as_str()).arg(delivered).arg(seen_seq);
    let mut v = relay::eval(state, &state.scripts.read, &call).await?;
    if status(&v) == "AHEAD" && int_at(&v, 1) == 0 {
        // Redis has no state for the conversation (lost, or expired while
        // idle): seed it from the record and try once more.
        repair_conversation(state, &conv).await?;
        v = relay::eval(state, &state.scripts.read, &call).await?;
    }
    if status(&v) == "AHEAD" {
        let cur = int_at(&v, 1);
        return Err(GatewayError::invalid(format!("seq {seq} is beyond the conversation's last position {cur}")));
    }
    let nd = int_at(&v, 1) as u64;
    let ns = int_at(&v, 2) as u64;
    let changed = int_at(&v, 3) == 1;
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
        publish(state, Publish { log: Some(&ev), relay: Some(&relay) }).await?;
    }
    Ok(rid.map(|rid| ServerFrame::Ack { rid: Some(rid), conversation: conv, seq, ts: schema::now_ms(), pos: None, duplicate: !changed }))
}

/// Typing: relayed to the other side only (a customer's to the agents
/// watching the conversation), never stored.
pub async fn typing(state: &AppState, ident: &Identity, conv: String) -> Result<()> {
    authorize(ident, &conv)?;
    let frame = ServerFrame::Typing { conversation: conv.clone(), who: ident.user_ref(), expires_in_ms: TYPING_TTL_MS }.to_json();
    let audience = Audience::to_side(ident.kind.side().other());
    relay::relay_frame(state, audience, &conv, frame).await
}

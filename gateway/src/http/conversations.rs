//! The chat list (`GET /api/conversations`, O(page) from Redis sorted sets),
//! one conversation's state, its history pages, and customer profiles.

use std::collections::HashMap;

use hyper::body::Incoming;
use hyper::{Request, Response};
use schema::frames::ConversationRow;
use schema::limits::{DEFAULT_PAGE, MAX_PAGE};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::extract::{agent, agent_or_owner, ok_json, query, IdParam};
use crate::error::{Body, ErrorReply, GatewayError};
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

async fn rows(state: &AppState, ids: &[String]) -> Result<Vec<ConversationRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.hgetall(state.keys.row(id));
    }
    let mut conn = state.redis();
    let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
    Ok(ids.iter().zip(hashes.iter()).filter_map(|(id, h)| schema::chatlist::decode(id, h)).collect())
}

/// Query of `GET /api/conversations`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ListQuery {
    /// Page size, 1..100 (default 50).
    limit: Option<u32>,
    /// `true`: only conversations with unread messages.
    unread_only: Option<bool>,
    /// Customer username prefix (at most 64 characters).
    search: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct ConversationList {
    total: u64,
    unread_conversations: u64,
    /// Chat-list rows (`docs/protocol.md`, `conversation` frame).
    #[schema(value_type = Vec<Object>)]
    items: Vec<ConversationRow>,
    next_cursor: Option<String>,
}

/// `GET /api/conversations`: O(page) from Redis sorted sets, never a scan.
#[utoipa::path(get, path = "/api/conversations", tag = "conversations", params(ListQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the chat list, newest first", body = ConversationList),
        (status = 400, description = "Bad limit, cursor or search", body = ErrorReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 403, description = "Agents only", body = ErrorReply),
        (status = 503, description = "Redis unavailable", body = ErrorReply),
    ))]
pub async fn list(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    agent(state, &req).await?;
    let q = query(&req);
    let limit = match q.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| GatewayError::invalid("limit must be a number"))?.clamp(1, MAX_PAGE),
        None => DEFAULT_PAGE,
    };
    let unread_only = matches!(q.get("unread_only").map(String::as_str), Some("true" | "1" | "yes"));
    let search = q.get("search").map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty());
    let cursor = q.get("cursor").filter(|c| !c.is_empty()).cloned();
    let k = &state.keys;
    let mut conn = state.redis();
    let (items, next_cursor, total, unread_total) = if let Some(prefix) = search {
        if prefix.chars().count() > 64 {
            return Err(GatewayError::invalid("search: at most 64 characters"));
        }
        let start: Vec<u8> = match &cursor {
            Some(c) => {
                let raw = hex::decode(c).map_err(|_| GatewayError::invalid("bad cursor"))?;
                let mut v = b"(".to_vec();
                v.extend(raw);
                v
            }
            None => {
                let mut v = b"[".to_vec();
                v.extend(prefix.as_bytes());
                v
            }
        };
        let mut end = b"[".to_vec();
        end.extend(prefix.as_bytes());
        end.push(0xff);
        let (members, total, unread_total): (Vec<Vec<u8>>, u64, u64) = redis::pipe()
            .cmd("ZRANGEBYLEX")
            .arg(k.chats_names())
            .arg(start)
            .arg(end)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .zcard(k.chats_all())
            .zcard(k.chats_unread())
            .query_async(&mut conn)
            .await?;
        let ids: Vec<String> = members
            .iter()
            .filter_map(|m| m.iter().position(|b| *b == 0).map(|i| String::from_utf8_lossy(&m[i + 1..]).into_owned()))
            .collect();
        let next = (members.len() == limit).then(|| members.last().map(hex::encode)).flatten();
        let mut items = rows(state, &ids).await?;
        if unread_only {
            items.retain(|r| r.unread > 0);
        }
        (items, next, total, unread_total)
    } else {
        let key = if unread_only { k.chats_unread() } else { k.chats_all() };
        let (max, after): (String, Option<(i64, String)>) = match &cursor {
            Some(c) => {
                let (s, id) = c.split_once(':').ok_or_else(|| GatewayError::invalid("bad cursor"))?;
                let s: i64 = s.parse().map_err(|_| GatewayError::invalid("bad cursor"))?;
                (s.to_string(), Some((s, id.to_string())))
            }
            None => ("+inf".to_string(), None),
        };
        // Ties on the cursor's score come back in reverse member order: skip
        // those at or above the cursor's id. Fetch a few extra to cover them.
        let (found, total, unread_total): (Vec<(String, f64)>, u64, u64) = redis::pipe()
            .cmd("ZREVRANGEBYSCORE")
            .arg(&key)
            .arg(&max)
            .arg("-inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit + 64)
            .zcard(k.chats_all())
            .zcard(k.chats_unread())
            .query_async(&mut conn)
            .await?;
        let page: Vec<(String, i64)> = found
            .into_iter()
            .map(|(id, s)| (id, s as i64))
            .filter(|(id, s)| match &after {
                Some((cs, cid)) => *s < *cs || (*s == *cs && id.as_str() < cid.as_str()),
                None => true,
            })
            .take(limit)
            .collect();
        let next = (page.len() == limit).then(|| page.last().map(|(id, s)| format!("{s}:{id}"))).flatten();
        let ids: Vec<String> = page.into_iter().map(|(id, _)| id).collect();
        (rows(state, &ids).await?, next, total, unread_total)
    };
    ok_json(&ConversationList { total, unread_conversations: unread_total, items, next_cursor })
}

#[derive(Serialize, ToSchema)]
struct Receipts {
    customer_delivered: u64,
    customer_seen: u64,
    staff_delivered: u64,
    staff_seen: u64,
}

#[derive(Serialize, ToSchema)]
struct ConversationState {
    /// Its chat-list row (null before its first message).
    #[schema(value_type = Option<Object>)]
    row: Option<ConversationRow>,
    receipts: Receipts,
    /// The customer has a socket open.
    online: bool,
}

/// `GET /api/conversations/{id}`: its row, read receipts and presence.
#[utoipa::path(get, path = "/api/conversations/{id}", tag = "conversations", params(IdParam), security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation", body = ConversationState),
        (status = 400, description = "Not a valid id", body = ErrorReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 403, description = "Another customer's conversation", body = ErrorReply),
        (status = 404, description = "No such conversation", body = ErrorReply),
        (status = 503, description = "Redis or the store unavailable", body = ErrorReply),
    ))]
pub async fn one(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    if !schema::ids::valid_id(id) {
        return Err(GatewayError::invalid("not a valid conversation id"));
    }
    agent_or_owner(state, &req, id).await?;
    let k = &state.keys;
    let mut conn = state.redis();
    let (row, rs, online, exists): (HashMap<String, String>, HashMap<String, u64>, u64, bool) = redis::pipe()
        .hgetall(k.row(id))
        .hgetall(k.read_state(id))
        .scard(k.customer_nodes(id))
        .exists(k.customer(id))
        .query_async(&mut conn)
        .await?;
    if !exists && row.is_empty() && state.store.customer(id).await?.is_none() {
        return Err(GatewayError::not_found(format!("no conversation `{id}`")));
    }
    let g = |f: &str| rs.get(f).copied().unwrap_or(0);
    ok_json(&ConversationState {
        row: schema::chatlist::decode(id, &row),
        receipts: Receipts {
            customer_delivered: g("customer_delivered"),
            customer_seen: g("customer_seen"),
            staff_delivered: g("staff_delivered"),
            staff_seen: g("staff_seen"),
        },
        online: online > 0,
    })
}

/// Query of `GET /api/conversations/{id}/messages`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct MessagesQuery {
    /// Messages with a seq below this one (older page); default: the newest.
    before: Option<u64>,
    /// Page size, 1..100 (default 50).
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct MessagesPage {
    /// Messages, oldest first (`docs/protocol.md`, `message`).
    #[schema(value_type = Vec<Object>)]
    items: Value,
    has_more: bool,
}

/// `GET /api/conversations/{id}/messages`: a page of history from the record.
#[utoipa::path(get, path = "/api/conversations/{id}/messages", tag = "conversations", params(IdParam, MessagesQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of messages", body = MessagesPage),
        (status = 400, description = "Bad id, before or limit", body = ErrorReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 403, description = "Another customer's conversation", body = ErrorReply),
        (status = 404, description = "No such conversation", body = ErrorReply),
        (status = 503, description = "The store unavailable", body = ErrorReply),
    ))]
pub async fn messages(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    if !schema::ids::valid_id(id) {
        return Err(GatewayError::invalid("not a valid conversation id"));
    }
    let who = agent_or_owner(state, &req, id).await?;
    let q = query(&req);
    let before = match q.get("before").filter(|b| !b.is_empty()) {
        Some(b) => Some(b.parse::<u64>().map_err(|_| GatewayError::invalid("before must be a seq number"))?),
        None => None,
    };
    let limit = match q.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| GatewayError::invalid("limit must be a number"))?.clamp(1, MAX_PAGE),
        None => DEFAULT_PAGE,
    };
    if who.is_agent() && state.store.customer(id).await?.is_none() {
        return Err(GatewayError::not_found(format!("no conversation `{id}`")));
    }
    let (items, has_more) = state.store.messages_page(id, before, limit).await?;
    ok_json(&MessagesPage { items: json!(items), has_more })
}

#[derive(Serialize, ToSchema)]
struct EditsReply {
    /// `{action: edit|delete, previous_text, by_kind, by_id, seq, pos, ts}`, oldest first.
    #[schema(value_type = Vec<Object>)]
    items: Value,
}

/// `GET /api/conversations/{id}/messages/{seq}/edits`: who edited or
/// deleted the message, when, and the text before (the worker's audit
/// trail). Agents only; there are no agent roles yet (every agent is staff),
/// so "admins only" is every agent until roles exist.
#[utoipa::path(get, path = "/api/conversations/{id}/messages/{seq}/edits", tag = "conversations",
    params(IdParam, ("seq" = u64, Path, description = "The message's seq")), security(("bearer" = [])),
    responses(
        (status = 200, description = "The message's audit trail", body = EditsReply),
        (status = 400, description = "Bad id or seq", body = ErrorReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 403, description = "Agents only", body = ErrorReply),
        (status = 503, description = "The store unavailable", body = ErrorReply),
    ))]
pub async fn message_edits(state: &AppState, req: Request<Incoming>, id: &str, seq: &str) -> Result<Response<Body>> {
    if !schema::ids::valid_id(id) {
        return Err(GatewayError::invalid("not a valid conversation id"));
    }
    let seq = seq.parse::<u64>().map_err(|_| GatewayError::invalid("seq must be a number"))?;
    agent(state, &req).await?;
    ok_json(&EditsReply { items: json!(state.store.message_edits(id, seq).await?) })
}

#[derive(Serialize, ToSchema)]
struct CustomerProfile {
    id: String,
    username: String,
    avatar_url: Option<String>,
    /// Null with `points_unavailable` when the loyalty service is down.
    points: Option<i64>,
    points_version: Option<u64>,
    points_unavailable: bool,
    online: bool,
    /// Unix milliseconds of the last socket's close.
    last_seen: Option<i64>,
}

/// `GET /api/customers/{id}`: the customer's profile, points and presence.
#[utoipa::path(get, path = "/api/customers/{id}", tag = "customers", params(IdParam), security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile", body = CustomerProfile),
        (status = 400, description = "Not a valid id", body = ErrorReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 403, description = "Another customer", body = ErrorReply),
        (status = 404, description = "No such customer", body = ErrorReply),
        (status = 503, description = "Redis or the store unavailable", body = ErrorReply),
    ))]
pub async fn customer(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    if !schema::ids::valid_id(id) {
        return Err(GatewayError::invalid("not a valid customer id"));
    }
    agent_or_owner(state, &req, id).await?;
    let c = state.store.customer(id).await?.ok_or_else(|| GatewayError::not_found(format!("no customer `{id}`")))?;
    let mut conn = state.redis();
    let (online, last_seen): (u64, Option<i64>) = redis::pipe()
        .scard(state.keys.customer_nodes(id))
        .hget(state.keys.customer(id), "last_seen")
        .query_async(&mut conn)
        .await?;
    // null (with points_unavailable) when the loyalty service is down: the
    // rest of the profile does not depend on it.
    let balance = crate::domain::points::balance(state, id).await;
    ok_json(&CustomerProfile {
        id: c.id,
        username: c.username,
        avatar_url: c.avatar_url,
        points: balance.map(|b| b.balance),
        points_version: balance.map(|b| b.version),
        points_unavailable: balance.is_none(),
        online: online > 0,
        last_seen,
    })
}


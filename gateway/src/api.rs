//! REST: login, tickets, the chat list, history pages, customer profiles,
//! dev tokens, health and metrics. Errors are `{"error":{"code","message"}}`.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use schema::frames::{ConversationRow, CustomerRef, ErrorCode};
use schema::limits::{DEFAULT_PAGE, MAX_BODY_BYTES, MAX_PAGE};
use serde::Deserialize;
use serde_json::json;

use crate::auth;
use crate::error::{error_response, json_response, Body, GatewayError};
use crate::registry::Identity;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Routes `/api/*`. Returns the matched route pattern (a bounded metrics label) and the response.
pub async fn handle(state: &AppState, req: Request<Incoming>) -> (&'static str, Response<Body>) {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    let (route, res) = match (method.clone(), segs.as_slice()) {
        (Method::POST, ["login"]) => ("/api/login", login(state, req).await),
        (Method::POST, ["logout"]) => ("/api/logout", logout(state, req).await),
        (Method::GET, ["me"]) => ("/api/me", me(state, req).await),
        (Method::POST, ["ws-ticket"]) => ("/api/ws-ticket", ws_ticket(state, req).await),
        (Method::POST, ["dev", "customer-token"]) if state.cfg.dev => ("/api/dev/customer-token", dev_customer_token(state, req).await),
        (Method::GET, ["conversations"]) => ("/api/conversations", conversations(state, req).await),
        (Method::GET, ["conversations", id]) => {
            let id = id.to_string();
            ("/api/conversations/{id}", conversation(state, req, &id).await)
        }
        (Method::GET, ["conversations", id, "messages"]) => {
            let id = id.to_string();
            ("/api/conversations/{id}/messages", messages(state, req, &id).await)
        }
        (Method::GET, ["customers", id]) => {
            let id = id.to_string();
            ("/api/customers/{id}", customer(state, req, &id).await)
        }
        (Method::GET, ["customers", id, "vouchers"]) => {
            let id = id.to_string();
            ("/api/customers/{id}/vouchers", crate::loyalty::vouchers(state, req, &id).await)
        }
        (Method::GET, ["customers", id, "orders"]) => {
            let id = id.to_string();
            ("/api/customers/{id}/orders", crate::loyalty::orders(state, req, &id).await)
        }
        (Method::GET, ["customers", id, "transactions"]) => {
            let id = id.to_string();
            ("/api/customers/{id}/transactions", crate::loyalty::transactions(state, req, &id).await)
        }
        (Method::POST, ["customers", id, "points"]) => {
            let id = id.to_string();
            ("/api/customers/{id}/points", crate::loyalty::give_points(state, req, &id).await)
        }
        (Method::POST, ["customers", id, "points", "reset"]) => {
            let id = id.to_string();
            ("/api/customers/{id}/points/reset", crate::loyalty::reset_points(state, req, &id).await)
        }
        (Method::POST, ["orders", "events"]) => ("/api/orders/events", crate::orders::order_event(state, req).await),
        _ => {
            let known = matches!(
                segs.as_slice(),
                ["login"] | ["logout"] | ["me"] | ["ws-ticket"] | ["conversations"] | ["conversations", _] | ["conversations", _, "messages"] | ["customers", _]
            ) || matches!(
                segs.as_slice(),
                ["customers", _, "vouchers" | "orders" | "transactions" | "points"] | ["customers", _, "points", "reset"] | ["orders", "events"]
            );
            if known {
                let e = GatewayError::invalid(format!("method {method} is not allowed on {path}"));
                ("other", Ok(with_status(error_response(&e), StatusCode::METHOD_NOT_ALLOWED)))
            } else {
                ("other", Err(GatewayError::not_found(format!("no route {path}"))))
            }
        }
    };
    (route, res.unwrap_or_else(|e| error_response(&e)))
}

fn with_status(mut r: Response<Body>, s: StatusCode) -> Response<Body> {
    *r.status_mut() = s;
    r
}

fn ok(v: serde_json::Value) -> Result<Response<Body>> {
    Ok(json_response(StatusCode::OK, &v))
}

/// Reads a JSON body, at most [`MAX_BODY_BYTES`].
pub async fn read_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T> {
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES);
    let bytes: Bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return Err(GatewayError::client(ErrorCode::TooLarge, format!("request body over {MAX_BODY_BYTES} bytes")));
            }
            return Err(GatewayError::invalid("could not read the request body"));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| GatewayError::invalid(format!("invalid JSON body: {e}")))
}

pub fn query(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub async fn caller(state: &AppState, req: &Request<Incoming>) -> Result<Identity> {
    let token = auth::bearer(req).ok_or_else(|| GatewayError::unauthorized("missing Authorization: Bearer <token>"))?;
    auth::identify(state, &token).await
}

pub(crate) async fn agent(state: &AppState, req: &Request<Incoming>) -> Result<Identity> {
    let who = caller(state, req).await?;
    if !who.is_agent() {
        return Err(GatewayError::forbidden("agents only"));
    }
    Ok(who)
}

/// Agents, or the customer whose conversation it is.
pub(crate) async fn agent_or_owner(state: &AppState, req: &Request<Incoming>, conv: &str) -> Result<Identity> {
    let who = caller(state, req).await?;
    if let Some(own) = who.own_conversation() {
        if own != conv {
            return Err(GatewayError::forbidden("customers may only read their own conversation"));
        }
    }
    Ok(who)
}

fn client_addr(req: &Request<Incoming>) -> String {
    req.extensions().get::<std::net::SocketAddr>().map(|a| a.ip().to_string()).unwrap_or_default()
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let addr = client_addr(&req);
    let body: LoginBody = read_json(req).await?;
    if body.username.is_empty() || body.username.len() > 64 || body.password.len() > 1024 {
        return Err(GatewayError::invalid("username (1..64) and password (..1024) required"));
    }
    let user_key = format!("u:{}", body.username.to_lowercase());
    let addr_key = format!("a:{addr}");
    if auth::login_throttled(state, &user_key).await? || auth::login_throttled(state, &addr_key).await? {
        return Err(GatewayError::client(ErrorCode::RateLimited, "too many failed logins: wait a few minutes"));
    }
    match state.store.verify_agent(&body.username, &body.password).await? {
        Some(agent) => {
            let token = auth::create_session(state, &agent).await?;
            ok(json!({"token": token, "agent": agent}))
        }
        None => {
            auth::login_failed(state, &user_key).await?;
            auth::login_failed(state, &addr_key).await?;
            Err(GatewayError::unauthorized("wrong username or password"))
        }
    }
}

async fn logout(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let token = auth::bearer(&req).ok_or_else(|| GatewayError::unauthorized("missing Authorization: Bearer <token>"))?;
    auth::revoke_session(state, &token).await?;
    ok(json!({"ok": true}))
}

async fn me(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let who = caller(state, &req).await?;
    ok(json!({"user": who.user_ref(), "display_name": who.display_name}))
}

async fn ws_ticket(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let who = caller(state, &req).await?;
    let ticket = auth::issue_ticket(state, &who).await?;
    ok(json!({"ticket": ticket, "expires_in": auth::TICKET_TTL_SECS}))
}

#[derive(Deserialize)]
struct DevTokenBody {
    username: String,
}

async fn dev_customer_token(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let body: DevTokenBody = read_json(req).await?;
    let username = body.username.trim().to_string();
    let id = username.to_lowercase();
    if !schema::ids::valid_id(&id) {
        return Err(GatewayError::invalid("username: 1..64 of letters, digits, `_`, `-`, `.`"));
    }
    let expiry = auth::now_secs() + 7 * 24 * 3600;
    let token = auth::sign_customer_token(&state.customer_secret, &id, &username, expiry);
    let ident = auth::verify_customer_token(&state.customer_secret, &token, auth::now_secs())?;
    auth::ensure_customer_profile(state, &ident).await?;
    ok(json!({"token": token, "customer": {"id": id, "username": username}, "conversation": id, "expires_at": expiry}))
}

fn row_from(id: &str, h: &HashMap<String, String>) -> Option<ConversationRow> {
    if h.is_empty() {
        return None;
    }
    let num = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    Some(ConversationRow {
        id: id.to_string(),
        customer: CustomerRef {
            id: h.get("customer_id").cloned().unwrap_or_else(|| id.to_string()),
            username: h.get("username").cloned().unwrap_or_else(|| id.to_string()),
            avatar_url: h.get("avatar_url").filter(|a| !a.is_empty()).cloned(),
        },
        preview: h.get("preview").cloned().unwrap_or_default(),
        last_ts: num("last_ts"),
        unread: num("unread").max(0) as u64,
        last_seq: num("last_seq").max(0) as u64,
    })
}

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
    Ok(ids.iter().zip(hashes.iter()).filter_map(|(id, h)| row_from(id, h)).collect())
}

/// `GET /api/conversations`: O(page) from Redis sorted sets, never a scan.
async fn conversations(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
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
    ok(json!({"total": total, "unread_conversations": unread_total, "items": items, "next_cursor": next_cursor}))
}

async fn conversation(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
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
    ok(json!({
        "row": row_from(id, &row),
        "receipts": {
            "customer_delivered": g("customer_delivered"),
            "customer_seen": g("customer_seen"),
            "staff_delivered": g("staff_delivered"),
            "staff_seen": g("staff_seen"),
        },
        "online": online > 0,
    }))
}

async fn messages(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
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
    ok(json!({"items": items, "has_more": has_more}))
}

async fn customer(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
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
    let balance = crate::loyalty::balance(state, id).await;
    ok(json!({
        "id": c.id,
        "username": c.username,
        "avatar_url": c.avatar_url,
        "points": balance.map(|b| b.balance),
        "points_version": balance.map(|b| b.version),
        "points_unavailable": balance.is_none(),
        "online": online > 0,
        "last_seen": last_seen,
    }))
}

/// `GET /readyz`: Redis and the store answer.
pub async fn readyz(state: &AppState) -> Response<Body> {
    let mut conn = state.redis();
    let redis_ok = tokio::time::timeout(std::time::Duration::from_secs(2), redis::cmd("PING").query_async::<String>(&mut conn))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    let store_ok = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await.map(|r| r.is_ok()).unwrap_or(false);
    let joined = !state.fenced.load(std::sync::atomic::Ordering::SeqCst);
    let ready = redis_ok && store_ok && joined;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, &json!({"ready": ready, "redis": redis_ok, "store": store_ok, "joined": joined}))
}

pub fn error(code: ErrorCode, msg: &str) -> Response<Body> {
    error_response(&GatewayError::client(code, msg))
}


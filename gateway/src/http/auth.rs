//! Sessions: login (throttled per username and client address, hashes
//! bounded per node), logout, `me`,
//! single-use WebSocket tickets, and dev-mode customer tokens.

use hyper::body::Incoming;
use hyper::{Request, Response};
use schema::frames::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use super::extract::{caller, client_addr, ok, read_json};
use crate::auth;
use crate::domain::conversations::ensure_customer_profile;
use crate::error::{error_response, Body, GatewayError};
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

/// A refusal with `Retry-After` (seconds, rounded up).
fn refuse(code: ErrorCode, msg: String, retry_ms: u64) -> Response<Body> {
    let mut r = error_response(&GatewayError::client(code, msg));
    let secs = retry_ms.div_ceil(1000).max(1);
    if let Ok(v) = hyper::header::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    r
}

/// `POST /api/login`. The attempt is counted before the password is hashed
/// (so a burst cannot slip past the count), per (username, client address)
/// with growing delays and per address; the hash waits for one of the
/// node's hashing slots (503 when none frees up soon).
pub async fn login(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let addr = client_addr(&req);
    let body: LoginBody = read_json(req).await?;
    if body.username.is_empty() || body.username.len() > 64 || body.password.len() > 1024 {
        return Err(GatewayError::invalid("username (1..64) and password (..1024) required"));
    }
    if let auth::LoginGate::Wait(ms) = auth::login_gate(state, &body.username, &addr).await? {
        let msg = format!("too many login attempts: retry in {} s", ms.div_ceil(1000).max(1));
        return Ok(refuse(ErrorCode::RateLimited, msg, ms));
    }
    match auth::verify_password(state, &body.username, &body.password).await? {
        None => Ok(refuse(ErrorCode::Unavailable, "too many logins at once: retry in a second".into(), 1000)),
        Some(Some(agent)) => {
            auth::login_succeeded(state, &body.username, &addr).await?;
            let token = auth::create_session(state, &agent).await?;
            ok(json!({"token": token, "agent": agent}))
        }
        Some(None) => Err(GatewayError::unauthorized("wrong username or password")),
    }
}

pub async fn logout(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let token = auth::bearer(&req).ok_or_else(|| GatewayError::unauthorized("missing Authorization: Bearer <token>"))?;
    auth::revoke_session(state, &token).await?;
    ok(json!({"ok": true}))
}

pub async fn me(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let who = caller(state, &req).await?;
    ok(json!({"user": who.user_ref(), "display_name": who.display_name}))
}

pub async fn ws_ticket(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let who = caller(state, &req).await?;
    let ticket = auth::issue_ticket(state, &who).await?;
    ok(json!({"ticket": ticket, "expires_in": auth::TICKET_TTL_SECS}))
}

#[derive(Deserialize)]
struct DevTokenBody {
    username: String,
}

pub async fn dev_customer_token(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let body: DevTokenBody = read_json(req).await?;
    let username = body.username.trim().to_string();
    let id = username.to_lowercase();
    if !schema::ids::valid_id(&id) {
        return Err(GatewayError::invalid("username: 1..64 of letters, digits, `_`, `-`, `.`"));
    }
    let expiry = auth::now_secs() + 7 * 24 * 3600;
    let token = auth::sign_customer_token(&state.customer_secret, &id, &username, expiry);
    let ident = auth::verify_customer_token(&state.customer_secret, &token, auth::now_secs(), state.cfg.customer_token_max_secs)?;
    ensure_customer_profile(state, &ident).await?;
    ok(json!({"token": token, "customer": {"id": id, "username": username}, "conversation": id, "expires_at": expiry}))
}


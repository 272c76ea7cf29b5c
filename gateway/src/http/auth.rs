//! Sessions: login (throttled per username and client address, hashes
//! bounded per node), logout, `me`,
//! single-use WebSocket tickets, and dev-mode customer tokens.

use hyper::body::Incoming;
use hyper::{Request, Response};
use schema::frames::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::extract::{caller, client_addr, ok_json, read_json};
use crate::auth;
use crate::domain::conversations::ensure_customer_profile;
use crate::error::{error_response, Body, ErrorReply, GatewayError};
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

#[derive(Deserialize, ToSchema)]
struct LoginBody {
    #[schema(min_length = 1, max_length = 64, example = "demo")]
    username: String,
    #[schema(max_length = 1024, example = "demo")]
    password: String,
}

#[derive(Serialize, ToSchema)]
struct LoginReply {
    /// The session token: `Authorization: Bearer <token>` on later calls.
    token: String,
    /// The agent (`id`, `username`, `display_name`, ...).
    #[schema(value_type = Object)]
    agent: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
struct OkReply {
    ok: bool,
}

#[derive(Serialize, ToSchema)]
struct MeReply {
    /// `{"kind": "agent"|"customer", "id"}`.
    #[schema(value_type = Object)]
    user: serde_json::Value,
    display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct TicketReply {
    /// Single use: `GET /ws?ticket=<ticket>`.
    ticket: String,
    /// Seconds.
    expires_in: u64,
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
#[utoipa::path(post, path = "/api/login", tag = "sessions", request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in", body = LoginReply),
        (status = 400, description = "Malformed body", body = ErrorReply),
        (status = 401, description = "Wrong username or password", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 429, description = "Too many attempts from this address (Retry-After)", body = ErrorReply),
        (status = 503, description = "Too many logins at once, or Redis unavailable (Retry-After)", body = ErrorReply),
    ))]
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
            ok_json(&LoginReply { token, agent: json!(agent) })
        }
        Some(None) => Err(GatewayError::unauthorized("wrong username or password")),
    }
}

/// `POST /api/logout`: ends the session (its sockets close on every node).
#[utoipa::path(post, path = "/api/logout", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 200, description = "Session ended", body = OkReply),
        (status = 401, description = "No token", body = ErrorReply),
        (status = 503, description = "Redis unavailable", body = ErrorReply),
    ))]
pub async fn logout(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let token = auth::bearer(&req).ok_or_else(|| GatewayError::unauthorized("missing Authorization: Bearer <token>"))?;
    auth::revoke_session(state, &token).await?;
    ok_json(&OkReply { ok: true })
}

/// `GET /api/me`: who the token belongs to (an agent or a customer).
#[utoipa::path(get, path = "/api/me", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = MeReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 503, description = "Redis unavailable", body = ErrorReply),
    ))]
pub async fn me(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let who = caller(state, &req).await?;
    ok_json(&MeReply { user: json!(who.user_ref()), display_name: who.display_name.clone() })
}

/// `POST /api/ws-ticket`: a single-use ticket for `GET /ws?ticket=` (browsers cannot set headers on a WebSocket).
#[utoipa::path(post, path = "/api/ws-ticket", tag = "sessions", security(("bearer" = [])),
    responses(
        (status = 200, description = "A ticket", body = TicketReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 503, description = "Redis unavailable", body = ErrorReply),
    ))]
pub async fn ws_ticket(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    let who = caller(state, &req).await?;
    let ticket = auth::issue_ticket(state, &who).await?;
    ok_json(&TicketReply { ticket, expires_in: auth::TICKET_TTL_SECS })
}

#[derive(Deserialize, ToSchema)]
struct DevTokenBody {
    /// Letters, digits, `_`, `-`, `.` (1..64); the id is its lowercase form.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", example = "alice")]
    username: String,
}

#[derive(Serialize, ToSchema)]
struct DevTokenReply {
    /// A customer token (what the business backend signs in production).
    token: String,
    #[schema(value_type = Object)]
    customer: serde_json::Value,
    /// The customer's conversation id.
    conversation: String,
    /// Unix seconds.
    expires_at: u64,
}

/// `POST /api/dev/customer-token`: dev mode only (`CHAT_DEV=1`; 404 otherwise).
#[utoipa::path(post, path = "/api/dev/customer-token", tag = "dev", request_body = DevTokenBody,
    responses(
        (status = 200, description = "A customer token", body = DevTokenReply),
        (status = 400, description = "Invalid username", body = ErrorReply),
        (status = 404, description = "Not in dev mode", body = ErrorReply),
        (status = 503, description = "Redis or the store unavailable", body = ErrorReply),
    ))]
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
    ok_json(&DevTokenReply { token, customer: json!({"id": id, "username": username}), conversation: id.clone(), expires_at: expiry })
}


//! Sessions: login (throttled per username and address), logout, `me`,
//! single-use WebSocket tickets, and dev-mode customer tokens.

use hyper::body::Incoming;
use hyper::{Request, Response};
use schema::frames::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use super::extract::{caller, client_addr, ok, read_json};
use crate::auth;
use crate::domain::conversations::ensure_customer_profile;
use crate::error::{Body, GatewayError};
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

pub async fn login(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
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
    let ident = auth::verify_customer_token(&state.customer_secret, &token, auth::now_secs())?;
    ensure_customer_profile(state, &ident).await?;
    ok(json!({"token": token, "customer": {"id": id, "username": username}, "conversation": id, "expires_at": expiry}))
}


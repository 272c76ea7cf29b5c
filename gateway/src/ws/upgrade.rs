//! The WebSocket upgrade and admission: allowed origins, a node that is
//! shutting down or fenced, per-address and per-node caps, then who is
//! calling (a single-use ticket or a bearer token).

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use schema::frames::ErrorCode;

use crate::config::Config;
use crate::error::{error_reply, error_response, full, Body, GatewayError};
use crate::state::AppState;

/// Is this browser origin allowed to open a socket? No `Origin` (not a
/// browser) is allowed; otherwise the configured list, or the same host.
pub fn origin_allowed(cfg: &Config, origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    if cfg.allowed_origins.iter().any(|o| o == origin || o == "*") {
        return true;
    }
    let origin_host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
    if cfg.allowed_origins.is_empty() {
        if let Some(h) = host {
            if origin_host.eq_ignore_ascii_case(h) {
                return true;
            }
        }
    }
    if cfg.dev {
        let name = origin_host.rsplit_once(':').map(|(n, _)| n).unwrap_or(origin_host);
        return matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    }
    false
}

/// `GET /ws`: admission (origin, shutdown, fence, per-address and node caps),
/// then who is calling and its per-identity cap, then the upgrade.
#[utoipa::path(get, path = "/ws", tag = "realtime",
    params(("ticket" = Option<String>, Query, description = "A single-use ticket (POST /api/ws-ticket); or send Authorization: Bearer")),
    security((), ("bearer" = [])),
    responses(
        (status = 101, description = "Upgraded: frames as in docs/protocol.md"),
        (status = 400, description = "Not a WebSocket upgrade request", body = crate::error::ErrorReply),
        (status = 401, description = "No, unknown or used ticket or token", body = crate::error::ErrorReply),
        (status = 403, description = "Origin not allowed", body = crate::error::ErrorReply),
        (status = 429, description = "Too many sockets or connects from this address or identity", body = crate::error::ErrorReply),
        (status = 503, description = "Node full, draining or rejoining: connect to another", body = crate::error::ErrorReply),
    ))]
pub async fn ws_upgrade(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return error_reply(ErrorCode::Invalid, "expected a WebSocket upgrade request");
    }
    let origin = req.headers().get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(&state.cfg, origin, host) {
        return error_reply(ErrorCode::Forbidden, "origin not allowed");
    }
    if *state.shutdown.borrow() {
        return error_reply(ErrorCode::Unavailable, "node is shutting down: connect to another");
    }
    if state.fenced.load(std::sync::atomic::Ordering::SeqCst) {
        return error_reply(ErrorCode::Unavailable, "node is rejoining after a stall: connect again shortly");
    }
    let ip = req.extensions().get::<std::net::SocketAddr>().map(|a| a.ip()).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    if let Err(msg) = state.registry.admit_ip(ip, state.cfg.max_connections_per_ip, state.cfg.connect_rate_per_ip, state.cfg.max_connections) {
        let code = if msg.starts_with("node is full") { ErrorCode::Unavailable } else { ErrorCode::RateLimited };
        return error_reply(code, msg);
    }
    // Released below on every path that does not hand the socket over.
    let resp = ws_authorize_and_upgrade(state, req, ip).await;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        state.registry.release_ip(ip);
    }
    resp
}

async fn ws_authorize_and_upgrade(state: &AppState, mut req: Request<Incoming>, ip: std::net::IpAddr) -> Response<Body> {
    let ticket = req.uri().query().and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "ticket").map(|(_, v)| v.into_owned()));
    let ident = match (ticket.as_ref(), crate::auth::bearer(&req)) {
        (Some(t), _) => crate::auth::redeem_ticket(state, t).await,
        (None, Some(b)) => crate::auth::identify(state, &b).await,
        (None, None) => Err(GatewayError::unauthorized("missing ?ticket= or Authorization: Bearer")),
    };
    let ident = match ident {
        Ok(i) => i,
        Err(e) => return error_response(&e),
    };
    // Refused before the upgrade: one token's sockets multiply its sends and
    // its share of the node. The slot is given back when the socket ends.
    let (max, who) = match ident.kind {
        schema::frames::UserKind::Customer => (state.cfg.max_sockets_per_customer, "customer"),
        schema::frames::UserKind::Agent => (state.cfg.max_sockets_per_agent, "agent"),
    };
    let Some(slot) = state.registry.identities.admit(format!("{who}:{}", ident.id), max, state.cfg.send_rate_per_identity.unwrap_or(state.cfg.send_rate)) else {
        return error_reply(ErrorCode::RateLimited, &format!("too many open sockets for this {who} on this node (at most {max}): close one"));
    };
    if ident.kind == schema::frames::UserKind::Customer {
        if let Err(e) = crate::domain::conversations::ensure_customer_profile(state, &ident).await {
            return error_response(&e);
        }
    }
    match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((resp, fut)) => {
            let state = state.clone();
            tokio::spawn(async move {
                super::socket::serve(state.clone(), fut, ident, slot).await;
                state.registry.release_ip(ip);
            });
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, full(Bytes::new()))
        }
        Err(e) => error_reply(ErrorCode::Invalid, &format!("bad upgrade: {e}")),
    }
}

/// `GET /ws-echo` (test-only).
pub fn echo_upgrade(state: &AppState, mut req: Request<Incoming>) -> Response<Body> {
    match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((resp, fut)) => {
            tokio::spawn(super::echo::serve_echo(state.clone(), fut));
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, full(Bytes::new()))
        }
        Err(e) => error_reply(ErrorCode::Invalid, &format!("bad upgrade: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn origins() {
        let mut cfg = Config::parse_from(["gateway"]);
        assert!(origin_allowed(&cfg, None, Some("a:1")));
        assert!(origin_allowed(&cfg, Some("http://a:1"), Some("a:1")));
        assert!(!origin_allowed(&cfg, Some("http://evil.example"), Some("a:1")));
        cfg.allowed_origins = vec!["https://crm.example.com".into()];
        assert!(origin_allowed(&cfg, Some("https://crm.example.com"), Some("x")));
        assert!(!origin_allowed(&cfg, Some("https://x"), Some("x")));
    }
}

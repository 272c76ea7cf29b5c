//! HTTP: the one route table ([`route`]) and one module per resource:
//! agent sessions and tickets ([`auth`]), the chat list, history and
//! profiles ([`conversations`]), the customer panel and points actions
//! ([`loyalty`]), order events ([`orders`]), uploads and downloads ([`attachments`]), health and readiness
//! ([`health`]; `/metrics` has its own listener, `server.rs`) and the console ([`console`]); request extractors in
//! [`extract`], the client's address behind trusted proxies in
//! [`client_ip`]. Errors are `{"error":{"code","message"}}`. Every route
//! is described in the OpenAPI document ([`openapi`], `GET
//! /api/openapi.json`; its test fails on a route of this table that is not).

pub mod attachments;
pub mod auth;
pub mod client_ip;
pub mod console;
pub mod conversations;
pub mod extract;
pub mod health;
pub mod loyalty;
pub mod openapi;
pub mod orders;

use std::time::Instant;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use schema::frames::ErrorCode;

use crate::error::{error_reply, error_response, full, Body, GatewayError};
use crate::state::AppState;
use crate::ws::upgrade;

/// The one route table: every path, its bounded metrics label, its handler.
pub async fn route(state: AppState, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let (route, res) = match (req.method(), path.as_str()) {
        (_, "/ws") => ("/ws", upgrade::ws_upgrade(&state, req).await),
        (_, "/ws-echo") if state.cfg.test_echo => ("/ws-echo", upgrade::echo_upgrade(&state, req)),
        (&Method::GET, "/healthz") => ("/healthz", text(StatusCode::OK, "ok")),
        (&Method::GET, "/readyz") => ("/readyz", health::readyz(&state).await),
        // Not on the public port (`CHAT_METRICS_ADDR`); an explicit 404, not the console page.
        (_, "/metrics") => ("other", error_reply(ErrorCode::NotFound, "not found")),
        (_, p) if p.starts_with("/api/") => api(&state, req).await,
        (&Method::GET | &Method::HEAD, _) => ("static", console::static_file(&state, &path).await),
        _ => ("other", error_reply(ErrorCode::NotFound, "not found")),
    };
    let mut res = res;
    security_headers(&state, &path, &mut res);
    let status = res.status().as_u16().to_string();
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route, "status" => status).increment(1);
    metrics::histogram!(crate::metrics::HTTP_SECONDS, "route" => route).record(started.elapsed().as_secs_f64());
    res
}

/// The console's Content-Security-Policy: scripts and styles only from
/// the gateway's own files (the Vite build emits no inline script or
/// style), sockets and API calls to the same origin; images also from
/// https (customer avatars are URLs of the business).
const CSP_BASE: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: https:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'";

/// Headers on every reply: no MIME sniffing, no referrer; on pages, the
/// CSP. The console may be framed only by its own origin; the widget by
/// `CHAT_FRAME_ANCESTORS` (the CRM that embeds it).
fn security_headers(state: &AppState, path: &str, res: &mut Response<Body>) {
    use hyper::header::{HeaderValue, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
    let h = res.headers_mut();
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if h.contains_key(CONTENT_SECURITY_POLICY) {
        // The handler's own policy (attachment downloads: `sandbox`) stands.
        return;
    }
    let html = h.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if !html {
        // JSON, assets: nothing to run, nothing to frame.
        h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"));
        return;
    }
    let widget = matches!(path, "/widget" | "/widget/" | "/widget.html");
    let ancestors = if widget { state.cfg.frame_ancestors.trim() } else { "'self'" };
    if let Ok(v) = HeaderValue::from_str(&format!("{CSP_BASE}; frame-ancestors {ancestors}")) {
        h.insert(CONTENT_SECURITY_POLICY, v);
    }
    // X-Frame-Options cannot name other origins; browsers that know
    // frame-ancestors ignore it, older ones get SAMEORIGIN unless the widget
    // is meant to be framed elsewhere.
    if ancestors == "'self'" {
        h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(full(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

/// Routes `/api/*`. Returns the matched route pattern (a bounded metrics label) and the response.
async fn api(state: &AppState, req: Request<Incoming>) -> (&'static str, Response<Body>) {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    let (route, res) = match (method.clone(), segs.as_slice()) {
        (Method::GET, ["openapi.json"]) => ("/api/openapi.json", Ok(openapi::openapi_json())),
        (Method::POST, ["login"]) => ("/api/login", auth::login(state, req).await),
        (Method::POST, ["logout"]) => ("/api/logout", auth::logout(state, req).await),
        (Method::GET, ["me"]) => ("/api/me", auth::me(state, req).await),
        (Method::POST, ["ws-ticket"]) => ("/api/ws-ticket", auth::ws_ticket(state, req).await),
        (Method::POST, ["dev", "customer-token"]) if state.cfg.dev => ("/api/dev/customer-token", auth::dev_customer_token(state, req).await),
        (Method::GET, ["conversations"]) => ("/api/conversations", conversations::list(state, req).await),
        (Method::GET, ["conversations", id]) => {
            let id = id.to_string();
            ("/api/conversations/{id}", conversations::one(state, req, &id).await)
        }
        (Method::GET, ["conversations", id, "messages"]) => {
            let id = id.to_string();
            ("/api/conversations/{id}/messages", conversations::messages(state, req, &id).await)
        }
        (Method::GET, ["conversations", id, "messages", seq, "edits"]) => {
            let (id, seq) = (id.to_string(), seq.to_string());
            ("/api/conversations/{id}/messages/{seq}/edits", conversations::message_edits(state, req, &id, &seq).await)
        }
        (Method::GET, ["customers", id]) => {
            let id = id.to_string();
            ("/api/customers/{id}", conversations::customer(state, req, &id).await)
        }
        (Method::GET, ["customers", id, "vouchers"]) => {
            let id = id.to_string();
            ("/api/customers/{id}/vouchers", loyalty::vouchers(state, req, &id).await)
        }
        (Method::GET, ["customers", id, "orders"]) => {
            let id = id.to_string();
            ("/api/customers/{id}/orders", loyalty::orders(state, req, &id).await)
        }
        (Method::GET, ["customers", id, "transactions"]) => {
            let id = id.to_string();
            ("/api/customers/{id}/transactions", loyalty::transactions(state, req, &id).await)
        }
        (Method::POST, ["customers", id, "points"]) => {
            let id = id.to_string();
            ("/api/customers/{id}/points", loyalty::give_points(state, req, &id).await)
        }
        (Method::POST, ["customers", id, "points", "reset"]) => {
            let id = id.to_string();
            ("/api/customers/{id}/points/reset", loyalty::reset_points(state, req, &id).await)
        }
        (Method::POST, ["orders", "events"]) => ("/api/orders/events", orders::order_event(state, req).await),
        (Method::POST, ["attachments"]) => ("/api/attachments", attachments::upload(state, req).await),
        (Method::GET | Method::HEAD, ["attachments", id]) => {
            let id = id.to_string();
            ("/api/attachments/{id}", attachments::download_file(state, req, &id).await)
        }
        (Method::GET | Method::HEAD, ["attachments", id, "thumbnail"]) => {
            let id = id.to_string();
            ("/api/attachments/{id}/thumbnail", attachments::download_thumbnail(state, req, &id).await)
        }
        (Method::GET, ["attachments", id, "link"]) => {
            let id = id.to_string();
            ("/api/attachments/{id}/link", attachments::link(state, req, &id).await)
        }
        _ => {
            let known = matches!(
                segs.as_slice(),
                ["login"] | ["logout"] | ["me"] | ["ws-ticket"] | ["conversations"] | ["conversations", _] | ["conversations", _, "messages"] | ["customers", _]
            ) || matches!(
                segs.as_slice(),
                ["customers", _, "vouchers" | "orders" | "transactions" | "points"] | ["customers", _, "points", "reset"] | ["orders", "events"]
            ) || matches!(segs.as_slice(), ["attachments"] | ["attachments", _] | ["attachments", _, "thumbnail" | "link"]);
            if known {
                let e = GatewayError::invalid(format!("method {method} is not allowed on {path}"));
                ("other", Ok(extract::with_status(error_response(&e), StatusCode::METHOD_NOT_ALLOWED)))
            } else {
                ("other", Err(GatewayError::not_found(format!("no route {path}"))))
            }
        }
    };
    (route, res.unwrap_or_else(|e| error_response(&e)))
}


//! The accept loop, top-level routing, static files, the WebSocket upgrade,
//! and the one shutdown path: stop accepting -> close sockets with "going
//! away" -> drain -> return, capped by the grace period.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use schema::frames::ErrorCode;
use schema::keys::Keys;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api;
use crate::config::Config;
use crate::error::{error_response, Body, GatewayError};
use redis_conn::{RedisConn, RedisTarget};
use crate::registry::Registry;
use crate::broker::Scripts;
use crate::relay;
use crate::state::{AppState, State};

/// Default HMAC secret in dev mode only; outside dev mode a secret is required.
const DEV_SECRET: &str = "dev-only-customer-secret";

/// Connects to Redis, retrying for a while when it is not up yet.
async fn connect_redis(target: &RedisTarget, timeout: Duration) -> anyhow::Result<RedisConn> {
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        match target.connect(timeout).await {
            Ok(c) => return Ok(c),
            Err(e) if attempt < 50 => {
                tracing::warn!(error = %e, "redis not reachable yet, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Builds the state and serves until `shutdown` resolves.
pub async fn run(cfg: Config, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let secret = match (&cfg.customer_secret, cfg.dev) {
        (Some(s), _) if !s.is_empty() => s.as_bytes().to_vec(),
        (_, true) => DEV_SECRET.as_bytes().to_vec(),
        _ => anyhow::bail!("CHAT_CUSTOMER_SECRET is required outside dev mode (CHAT_DEV=1)"),
    };
    let metrics = crate::metrics::install();
    let redis_target = RedisTarget::new(&cfg.redis_url, cfg.redis_cluster)?;
    let redis = connect_redis(&redis_target, Duration::from_millis(cfg.redis_timeout_ms.max(100))).await?;
    let store = store::Store::connect(&cfg.database_url).await?;
    let loyalty = crate::loyalty::open(&cfg, &store)?;
    let node = cfg.node_id.clone().unwrap_or_else(|| format!("g-{}", &crate::ids::random_token()[..10]));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state: AppState = Arc::new(State {
        keys: Keys::new(cfg.key_prefix.clone()),
        node,
        redis,
        redis_target,
        store,
        registry: Registry::default(),
        scripts: Scripts::default(),
        metrics,
        shutdown: shutdown_rx.clone(),
        customer_secret: secret,
        loyalty,
        staff_delivered: Default::default(),
        // Until the node has joined (cleaned up what a node with its id left).
        fenced: std::sync::atomic::AtomicBool::new(true),
        cfg,
    });
    tracing::info!(node = %state.node, "gateway node started");
    tokio::spawn(crate::nodes::run(state.clone()));
    tokio::spawn(relay::relay_loops(state.clone()));
    if state.cfg.dev {
        let s = state.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::seed::seed(&s).await {
                tracing::warn!(error = %e, "dev seed failed");
            }
        });
    }

    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });
    let mut stop = shutdown_rx.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, addr) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, don't spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |mut req: Request<Incoming>| {
                        req.extensions_mut().insert(addr);
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(route(state, req).await) }
                    });
                    let conn = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), svc).with_upgrades();
                    let _ = conn.await;
                });
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    // Sockets see the shutdown flag and close with 1001 "going away"; wait for them.
    let deadline = Instant::now() + Duration::from_secs(state.cfg.shutdown_grace_secs);
    while state.registry.total() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    crate::nodes::leave(&state).await;
    tracing::info!(left = state.registry.total(), "gateway stopped");
    Ok(())
}

async fn route(state: AppState, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let (route, res) = match (req.method(), path.as_str()) {
        (_, "/ws") => ("/ws", ws_upgrade(&state, req).await),
        (_, "/ws-echo") if state.cfg.test_echo => ("/ws-echo", echo_upgrade(&state, req)),
        (&Method::GET, "/healthz") => ("/healthz", text(StatusCode::OK, "ok")),
        (&Method::GET, "/readyz") => ("/readyz", api::readyz(&state).await),
        (&Method::GET, "/metrics") => ("/metrics", text(StatusCode::OK, &state.metrics.render())),
        (_, p) if p.starts_with("/api/") => api::handle(&state, req).await,
        (&Method::GET | &Method::HEAD, _) => ("static", static_file(&state, &path).await),
        _ => ("other", api::error(ErrorCode::NotFound, "not found")),
    };
    let status = res.status().as_u16().to_string();
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route, "status" => status).increment(1);
    metrics::histogram!(crate::metrics::HTTP_SECONDS, "route" => route).record(started.elapsed().as_secs_f64());
    res
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

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

async fn ws_upgrade(state: &AppState, req: Request<Incoming>) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return api::error(ErrorCode::Invalid, "expected a WebSocket upgrade request");
    }
    let origin = req.headers().get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok());
    if !origin_allowed(&state.cfg, origin, host) {
        return api::error(ErrorCode::Forbidden, "origin not allowed");
    }
    if *state.shutdown.borrow() {
        return api::error(ErrorCode::Unavailable, "node is shutting down: connect to another");
    }
    if state.fenced.load(std::sync::atomic::Ordering::SeqCst) {
        return api::error(ErrorCode::Unavailable, "node is rejoining after a stall: connect again shortly");
    }
    let ip = req.extensions().get::<std::net::SocketAddr>().map(|a| a.ip()).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    if let Err(msg) = state.registry.admit_ip(ip, state.cfg.max_connections_per_ip, state.cfg.connect_rate_per_ip, state.cfg.max_connections) {
        let code = if msg.starts_with("node is full") { ErrorCode::Unavailable } else { ErrorCode::RateLimited };
        return api::error(code, msg);
    }
    // Released below on every path that does not hand the socket over.
    let resp = ws_authorize_and_upgrade(state, req, ip).await;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        state.registry.release_ip(ip);
    }
    resp
}

async fn ws_authorize_and_upgrade(state: &AppState, mut req: Request<Incoming>, ip: std::net::IpAddr) -> Response<Body> {
    let q = api::query(&req);
    let ident = match (q.get("ticket"), crate::auth::bearer(&req)) {
        (Some(t), _) => crate::auth::redeem_ticket(state, t).await,
        (None, Some(b)) => crate::auth::identify(state, &b).await,
        (None, None) => Err(GatewayError::unauthorized("missing ?ticket= or Authorization: Bearer")),
    };
    let ident = match ident {
        Ok(i) => i,
        Err(e) => return error_response(&e),
    };
    if ident.kind == schema::frames::UserKind::Customer {
        if let Err(e) = crate::auth::ensure_customer_profile(state, &ident).await {
            return error_response(&e);
        }
    }
    match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((resp, fut)) => {
            let state = state.clone();
            tokio::spawn(async move {
                crate::connection::serve(state.clone(), fut, ident).await;
                state.registry.release_ip(ip);
            });
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, Full::new(Bytes::new()))
        }
        Err(e) => api::error(ErrorCode::Invalid, &format!("bad upgrade: {e}")),
    }
}

fn echo_upgrade(state: &AppState, mut req: Request<Incoming>) -> Response<Body> {
    match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((resp, fut)) => {
            tokio::spawn(crate::connection::serve_echo(state.clone(), fut));
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, Full::new(Bytes::new()))
        }
        Err(e) => api::error(ErrorCode::Invalid, &format!("bad upgrade: {e}")),
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

/// Serves the built console: `/` and client routes -> index.html,
/// `/widget` -> widget.html, files under web/dist as they are.
async fn static_file(state: &AppState, path: &str) -> Response<Body> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|s| s == ".." || s.starts_with('.')) || rel.contains('\\') {
        return api::error(ErrorCode::NotFound, "not found");
    }
    let dir = std::path::Path::new(&state.cfg.web_dir);
    let (file, cache) = match rel {
        "" | "index.html" => (dir.join("index.html"), "no-cache"),
        "widget" | "widget/" | "widget.html" => (dir.join("widget.html"), "no-cache"),
        r if r.starts_with("assets/") => (dir.join(r), "public, max-age=31536000, immutable"),
        r => {
            let f = dir.join(r);
            if tokio::fs::metadata(&f).await.map(|m| m.is_file()).unwrap_or(false) {
                (f, "no-cache")
            } else if !r.contains('.') {
                (dir.join("index.html"), "no-cache")
            } else {
                return api::error(ErrorCode::NotFound, "not found");
            }
        }
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => Response::builder()
            .header("content-type", content_type(&file.to_string_lossy()))
            .header("cache-control", cache)
            .header("x-content-type-options", "nosniff")
            .body(Full::new(Bytes::from(bytes)))
            .unwrap_or_default(),
        Err(_) if rel.is_empty() || !rel.contains('.') => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(
                b"<!doctype html><title>Chat</title><p>The console is not built yet: run <code>scripts/web-build.sh</code>.</p>",
            )))
            .unwrap_or_default(),
        Err(_) => api::error(ErrorCode::NotFound, "not found"),
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

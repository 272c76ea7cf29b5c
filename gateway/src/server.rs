//! The process: builds the state, starts the node's loops (liveness,
//! inbox), the dev seed, and the accept loop; and the one shutdown path:
//! stop accepting -> close sockets with "going away" -> drain -> return,
//! capped by the grace period.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use redis_conn::{RedisConn, RedisTarget};
use schema::keys::Keys;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::broker::Scripts;
use crate::config::Config;
use crate::hub::Registry;
use crate::state::{AppState, State};

/// Default HMAC secret in dev mode only; outside dev mode a secret is required.
const DEV_SECRET: &str = "dev-only-customer-secret";

/// Connects to Redis, retrying for a while when it is not up yet.
async fn connect_redis(target: &RedisTarget, url: &str, timeout: Duration) -> anyhow::Result<RedisConn> {
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0;
    loop {
        match target.connect(timeout).await {
            Ok(c) => return Ok(c),
            Err(e) if redis_conn::is_auth_error(&e) => {
                anyhow::bail!("Redis refused the credentials of REDIS_URL ({}): {e}", redis_conn::redacted(url))
            }
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

/// Builds the state and serves until `shutdown` resolves: the public HTTP
/// port on `listener`, `/metrics` on `metrics_listener` (`CHAT_METRICS_ADDR`).
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let secret = match (&cfg.customer_secret, cfg.dev) {
        (Some(s), _) if !s.is_empty() => s.as_bytes().to_vec(),
        (_, true) => DEV_SECRET.as_bytes().to_vec(),
        _ => anyhow::bail!("CHAT_CUSTOMER_SECRET is required outside dev mode (CHAT_DEV=1)"),
    };
    let metrics = crate::metrics::install();
    let redis_target = RedisTarget::new(&cfg.redis_url, cfg.redis_cluster)?;
    let redis = connect_redis(&redis_target, &cfg.redis_url, Duration::from_millis(cfg.redis_timeout_ms.max(100))).await?;
    let store = store::Store::connect(&cfg.database_url).await?;
    let loyalty = crate::domain::points::open(&cfg, &store)?;
    let s3 = blobs::S3Settings {
        endpoint: cfg.s3_endpoint.clone(),
        region: cfg.s3_region.clone(),
        access_key_id: cfg.s3_access_key_id.clone(),
        secret_access_key: cfg.s3_secret_access_key.clone(),
        allow_http: cfg.s3_allow_http,
    };
    let blobs = blobs::Blobs::open(&cfg.upload_url, &s3)?;
    let link_key = crate::domain::attachments::links::derive_key(&secret);
    let node = cfg.node_id.clone().unwrap_or_else(|| format!("g-{}", &crate::ids::random_token()[..10]));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (subs, sub_ops) = crate::hub::subs::Subs::new();
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
        rows: Default::default(),
        subs,
        // Until the node has joined (cleaned up what a node with its id left).
        fenced: std::sync::atomic::AtomicBool::new(true),
        seeded: std::sync::atomic::AtomicBool::new(!cfg.dev),
        blobs,
        link_key,
        image_slots: tokio::sync::Semaphore::new(2),
        cfg,
    });
    tracing::info!(node = %state.node, "gateway node started");
    tokio::spawn(crate::node::liveness::run(state.clone()));
    tokio::spawn(crate::node::delivery::relay_loops(state.clone()));
    tokio::spawn(crate::node::delivery::flush_rows(state.clone()));
    tokio::spawn(crate::node::subs::run(state.clone(), sub_ops));
    tokio::spawn(crate::domain::attachments::sweep_loop(state.clone()));
    if state.cfg.dev {
        let s = state.clone();
        tokio::spawn(async move {
            // Until it succeeds (Redis or the store may come up late): the
            // node is not ready before, so no login races the seed.
            loop {
                match crate::dev::seed::seed(&s).await {
                    Ok(()) => break s.seeded.store(true, std::sync::atomic::Ordering::SeqCst),
                    Err(e) => tracing::warn!(error = %e, "dev seed failed; retrying"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });
    tokio::spawn(serve_metrics(metrics_listener, state.metrics.clone(), shutdown_rx.clone()));
    let conns = Arc::new(HttpConns::default());
    let mut stop = shutdown_rx.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
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
                let conns = conns.clone();
                tokio::spawn(serve_http(state, conns, stream, peer));
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
    crate::node::liveness::leave(&state).await;
    tracing::info!(left = state.registry.total(), "gateway stopped");
    Ok(())
}


/// Open plain HTTP connections (until one upgrades to a WebSocket, which
/// the hub's caps count from then on), per node and per TCP peer.
#[derive(Default)]
struct HttpConns {
    total: AtomicUsize,
    per_ip: dashmap::DashMap<IpAddr, usize>,
}

/// A connection's place in [`HttpConns`], given back on drop.
struct HttpSlot {
    conns: Arc<HttpConns>,
    ip: Option<IpAddr>,
}

impl HttpConns {
    /// Takes a slot, or says why not. `per_ip: None` skips the per-address
    /// cap (a trusted proxy carries many clients on its connections).
    fn admit(self: &Arc<Self>, ip: Option<IpAddr>, max_total: usize, max_per_ip: usize) -> Result<HttpSlot, &'static str> {
        if self.total.fetch_add(1, Ordering::SeqCst) >= max_total {
            self.total.fetch_sub(1, Ordering::SeqCst);
            return Err("node has too many open HTTP connections: retry shortly");
        }
        if let Some(ip) = ip {
            let mut n = self.per_ip.entry(ip).or_insert(0);
            if *n >= max_per_ip {
                drop(n);
                self.total.fetch_sub(1, Ordering::SeqCst);
                return Err("too many open HTTP connections from this address");
            }
            *n += 1;
        }
        Ok(HttpSlot { conns: self.clone(), ip })
    }
}

impl Drop for HttpSlot {
    fn drop(&mut self) {
        self.conns.total.fetch_sub(1, Ordering::SeqCst);
        if let Some(ip) = self.ip {
            // Remove at zero so the map holds only addresses with connections.
            self.conns.per_ip.remove_if_mut(&ip, |_, n| {
                *n -= 1;
                *n == 0
            });
        }
    }
}

/// One public HTTP connection: admission (per node and per peer), then
/// hyper with a header read timeout; each request carries the client's
/// address (see [`crate::http::client_ip`]).
async fn serve_http(state: AppState, conns: Arc<HttpConns>, mut stream: TcpStream, peer: SocketAddr) {
    let peer_ip = peer.ip().to_canonical();
    let proxied = crate::http::client_ip::is_trusted(&state.cfg.trusted_proxies, peer_ip);
    let per_ip = (!proxied).then_some(peer_ip);
    let _slot = match conns.admit(per_ip, state.cfg.max_http_connections, state.cfg.max_http_connections_per_ip) {
        Ok(s) => s,
        Err(msg) => {
            // Answer without reading the request, then close; bounded so a
            // peer that does not read cannot hold the task.
            let body = serde_json::json!({"error": {"code": "unavailable", "message": msg}}).to_string();
            let reply = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(reply.as_bytes())).await;
            let _ = tokio::time::timeout(Duration::from_millis(200), stream.shutdown()).await;
            return;
        }
    };
    let header_timeout = Duration::from_millis(state.cfg.header_read_timeout_ms.max(1));
    let svc = service_fn(move |mut req: Request<Incoming>| {
        // The `SocketAddr` a request carries is the client's (the peer's
        // port): every per-address limit downstream keys on it.
        let client = crate::http::client_ip::client_ip(&state.cfg.trusted_proxies, peer_ip, req.headers());
        req.extensions_mut().insert(SocketAddr::new(client, peer.port()));
        let state = state.clone();
        async move { Ok::<_, Infallible>(crate::http::route(state, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    let _ = conn.await;
}

/// `/metrics` on its own listener (`CHAT_METRICS_ADDR`), off the public port.
async fn serve_metrics(listener: TcpListener, handle: metrics_exporter_prometheus::PrometheusHandle, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let handle = handle.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let handle = handle.clone();
                        async move {
                            let (status, body) = match (req.method(), req.uri().path()) {
                                (&hyper::Method::GET, "/metrics") => (hyper::StatusCode::OK, handle.render()),
                                _ => (hyper::StatusCode::NOT_FOUND, "not found\n".to_string()),
                            };
                            let r = hyper::Response::builder()
                                .status(status)
                                .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
                                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                                .unwrap_or_default();
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(10))
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            _ = stop.changed() => break,
        }
    }
}

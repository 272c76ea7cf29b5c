//! The process: builds the state, starts the node's loops (liveness,
//! inbox), the dev seed, and the accept loop; and the one shutdown path:
//! stop accepting -> close sockets with "going away" -> drain -> return,
//! capped by the grace period.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use redis_conn::{RedisConn, RedisTarget};
use schema::keys::Keys;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Scripts;
use crate::config::Config;
use crate::hub::Registry;
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
    let loyalty = crate::domain::points::open(&cfg, &store)?;
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
        subs,
        // Until the node has joined (cleaned up what a node with its id left).
        fenced: std::sync::atomic::AtomicBool::new(true),
        seeded: std::sync::atomic::AtomicBool::new(!cfg.dev),
        cfg,
    });
    tracing::info!(node = %state.node, "gateway node started");
    tokio::spawn(crate::node::liveness::run(state.clone()));
    tokio::spawn(crate::node::delivery::relay_loops(state.clone()));
    tokio::spawn(crate::node::subs::run(state.clone(), sub_ops));
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
                        async move { Ok::<_, Infallible>(crate::http::route(state, req).await) }
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
    crate::node::liveness::leave(&state).await;
    tracing::info!(left = state.registry.total(), "gateway stopped");
    Ok(())
}


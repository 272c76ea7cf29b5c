//! `/readyz`: the node can serve (Redis and the store answer, it has joined
//! the nodes, and in dev mode the demo data is seeded).

use hyper::{Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{json_response, Body};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
struct Ready {
    ready: bool,
    redis: bool,
    store: bool,
    /// The node has joined the others (not fenced after a stall).
    joined: bool,
    /// Dev mode: the demo data is in place (always true otherwise).
    seeded: bool,
}

/// `GET /healthz`: the process answers (liveness).
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
#[allow(dead_code)]
pub fn healthz() {}

/// `GET /readyz`: Redis and the store answer.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready (what is not)", body = Ready),
    ))]
pub async fn readyz(state: &AppState) -> Response<Body> {
    let mut conn = state.redis();
    let redis_ok = tokio::time::timeout(std::time::Duration::from_secs(2), redis::cmd("PING").query_async::<String>(&mut conn))
        .await
        .map(|r| r.is_ok())
        .unwrap_or(false);
    let store_ok = tokio::time::timeout(std::time::Duration::from_secs(2), state.store.ping()).await.map(|r| r.is_ok()).unwrap_or(false);
    let joined = !state.fenced.load(std::sync::atomic::Ordering::SeqCst);
    // Dev mode: the demo data (and the demo agent's password hash) is in place.
    let seeded = state.seeded.load(std::sync::atomic::Ordering::SeqCst);
    let ready = redis_ok && store_ok && joined && seeded;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, &Ready { ready, redis: redis_ok, store: store_ok, joined, seeded })
}


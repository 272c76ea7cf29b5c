//! `/readyz`: the node can serve (Redis and the store answer, it has joined
//! the nodes, and in dev mode the demo data is seeded).

use hyper::{Response, StatusCode};
use serde_json::json;

use crate::error::{json_response, Body};
use crate::state::AppState;

/// `GET /readyz`: Redis and the store answer.
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
    json_response(status, &json!({"ready": ready, "redis": redis_ok, "store": store_ok, "joined": joined, "seeded": seeded}))
}


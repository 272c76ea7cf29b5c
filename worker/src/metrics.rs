//! Prometheus metrics: names, the process-wide recorder, and the `/metrics`
//! endpoint. Labels are bounded sets (event kinds, stages), never ids.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::WorkerError;

/// Events per persisted batch (histogram).
pub const BATCH_SIZE: &str = "worker_batch_size";
/// Time of one `persist` transaction (histogram).
pub const PERSIST_SECONDS: &str = "worker_persist_seconds";
/// Events persisted, by `kind` (message, edit, delete, react, read).
pub const EVENTS_TOTAL: &str = "worker_events_total";
/// Entries that could not be decoded or persisted (moved to the dead-letter stream).
pub const POISON_TOTAL: &str = "worker_poison_total";
/// Entries moved to the dead-letter stream, by `reason` (decode, version,
/// refused, seq_conflict).
pub const DEAD_LETTERS_TOTAL: &str = "worker_dead_letters_total";
/// Conversation counters found behind the record (after a `seq_conflict`) and raised.
pub const COUNTERS_RAISED: &str = "worker_counters_raised_total";
/// Messages not stored because the record already held the same sender's
/// message with the same `client_id` (a retry later than Redis's dedupe window).
pub const LATE_DUPLICATES: &str = "worker_late_duplicates_total";
/// Entries taken over from idle consumers with `XAUTOCLAIM`.
pub const CLAIMED_TOTAL: &str = "worker_claimed_total";
/// Entries delivered to the group and not yet acknowledged, all shards (gauge).
pub const STREAM_PENDING: &str = "worker_stream_pending";
/// Failures by `stage` (read, persist, redis, claim, connect).
pub const ERRORS_TOTAL: &str = "worker_errors_total";
/// Points requests handled, by `outcome` (ok, replayed, noop, conflict,
/// invalid, not_found, unavailable, expired).
pub const LOYALTY_TOTAL: &str = "worker_loyalty_requests_total";
/// Log entries not yet delivered to the group, all shards (gauge, by `group`).
pub const STREAM_LAG: &str = "worker_stream_lag";
/// Redis round trips of the worker, by `op` (rows, ack, pending).
pub const REDIS_SECONDS: &str = "worker_redis_seconds";

/// The process-wide recorder, installed on first use. `None` when another
/// recorder was installed first (an embedding program's own).
pub fn handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(BATCH_SIZE.into()),
                    &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(PERSIST_SECONDS.into()),
                        &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(REDIS_SECONDS.into()),
                        &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0],
                    )
                })
                .and_then(|b| b.install_recorder());
            match built {
                Ok(h) => {
                    describe();
                    // Histograms keep raw samples until upkeep drains them.
                    let upkeep = h.clone();
                    std::thread::Builder::new()
                        .name("metrics-upkeep".into())
                        .spawn(move || loop {
                            std::thread::sleep(Duration::from_secs(5));
                            upkeep.run_upkeep();
                        })
                        .ok();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    metrics::describe_histogram!(BATCH_SIZE, "Events per persisted batch");
    metrics::describe_histogram!(PERSIST_SECONDS, metrics::Unit::Seconds, "Time of one persist transaction");
    metrics::describe_counter!(EVENTS_TOTAL, "Events persisted, by kind");
    metrics::describe_counter!(POISON_TOTAL, "Stream entries that cannot be decoded or stored (dead-lettered)");
    metrics::describe_counter!(DEAD_LETTERS_TOTAL, "Stream entries moved to the dead-letter stream, by reason");
    metrics::describe_counter!(LATE_DUPLICATES, "Messages not stored twice: a sender's retry after Redis's dedupe window found the record's copy");
    metrics::describe_counter!(COUNTERS_RAISED, "Conversation counters raised to the record's last position after a seq_conflict");
    metrics::describe_counter!(CLAIMED_TOTAL, "Log entries claimed from idle consumers");
    metrics::describe_gauge!(STREAM_PENDING, "Log entries delivered and not yet acknowledged");
    metrics::describe_counter!(ERRORS_TOTAL, "Worker failures by stage");
    metrics::describe_counter!(LOYALTY_TOTAL, "Points requests handled, by outcome");
    metrics::describe_gauge!(STREAM_LAG, "Log entries not yet delivered to the consumer group");
    metrics::describe_histogram!(REDIS_SECONDS, metrics::Unit::Seconds, "Worker Redis round trips, by op");
    // Zero until something happens; exported from the start for dashboards.
    metrics::counter!(POISON_TOTAL).increment(0);
    for reason in ["decode", "version", "refused", "seq_conflict"] {
        metrics::counter!(DEAD_LETTERS_TOTAL, "reason" => reason).increment(0);
    }
    metrics::counter!(CLAIMED_TOTAL).increment(0);
    metrics::counter!(ERRORS_TOTAL, "stage" => "persist").increment(0);
    for outcome in ["ok", "replayed", "noop", "conflict", "invalid", "not_found", "unavailable", "expired"] {
        metrics::counter!(LOYALTY_TOTAL, "outcome" => outcome).increment(0);
    }
}

/// Serves `GET /metrics` on `addr` (port 0 picks one); returns the bound
/// address and the server task (abort it to stop).
pub async fn serve(addr: SocketAddr) -> Result<(SocketAddr, JoinHandle<()>), WorkerError> {
    let handle = handle();
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(respond(&req, handle.as_ref())) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                    tracing::debug!(error = %e, "metrics connection ended");
                }
            });
        }
    });
    Ok((local, task))
}

fn respond(req: &Request<Incoming>, handle: Option<&PrometheusHandle>) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.uri().path(), handle) {
        ("/metrics", Some(h)) => (StatusCode::OK, "text/plain; version=0.0.4", h.render()),
        ("/metrics", None) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "metrics recorder unavailable\n".into()),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

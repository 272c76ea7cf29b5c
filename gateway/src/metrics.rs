//! Metric names in one place; labels are bounded (frame types, codes, routes), never ids.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const CONNECTIONS: &str = "gateway_connections";
pub const FRAMES_IN: &str = "gateway_frames_in_total";
pub const FRAMES_OUT: &str = "gateway_frames_out_total";
pub const ERRORS: &str = "gateway_errors_total";
pub const SEND_ACK_SECONDS: &str = "gateway_send_ack_seconds";
pub const RELAY_SECONDS: &str = "gateway_relay_seconds";
pub const REDIS_SECONDS: &str = "gateway_redis_seconds";
pub const SLOW_CONSUMERS: &str = "gateway_slow_consumer_disconnects_total";
pub const QUEUE_DEPTH: &str = "gateway_outbound_queue_depth";
pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_SECONDS: &str = "http_request_duration_seconds";
pub const INBOX_BATCH: &str = "gateway_inbox_batch_size";
pub const REPLAYED: &str = "gateway_replayed_events_total";
pub const GAP_FILLS: &str = "gateway_gap_fills_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the global recorder once per process; later calls reuse it.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(INBOX_BATCH.into()), &[1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0]));
            match builder {
                Ok(b) => match b.install_recorder() {
                    Ok(h) => h,
                    Err(_) => PrometheusBuilder::new().build_recorder().handle(),
                },
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

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
pub const NODES_REAPED: &str = "gateway_nodes_reaped_total";
pub const QUEUE_DEPTH: &str = "gateway_outbound_queue_depth";
pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_SECONDS: &str = "http_request_duration_seconds";
pub const INBOX_BATCH: &str = "gateway_inbox_batch_size";
pub const REPLAYED: &str = "gateway_replayed_events_total";
pub const GAP_FILLS: &str = "gateway_gap_fills_total";
/// Chat-list rows handed to agent sockets (one per row per flush, not per socket).
pub const ROWS_FLUSHED: &str = "gateway_chatlist_rows_flushed_total";
/// Chat-list rows replaced by a newer row of their conversation before a flush.
pub const ROWS_COALESCED: &str = "gateway_chatlist_rows_coalesced_total";
/// Points actions (Give Points, Reset) that no worker answered within `CHAT_POINTS_WAIT_MS`.
pub const POINTS_TIMEOUTS: &str = "gateway_points_timeouts_total";

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
                    Ok(h) => {
                        register();
                        // Histograms keep raw samples until upkeep (or a scrape) drains
                        // them: without it an unscraped gateway grows without bound.
                        let upkeep = h.clone();
                        std::thread::Builder::new()
                            .name("metrics-upkeep".into())
                            .spawn(move || loop {
                                std::thread::sleep(std::time::Duration::from_secs(5));
                                upkeep.run_upkeep();
                            })
                            .ok();
                        h
                    }
                    Err(_) => PrometheusBuilder::new().build_recorder().handle(),
                },
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Exports the counters that may stay at zero for a long time (so dashboards
/// and alerts see 0, not "no data") and describes every metric.
fn register() {
    metrics::counter!(SLOW_CONSUMERS).increment(0);
    metrics::counter!(NODES_REAPED).increment(0);
    metrics::counter!(GAP_FILLS).increment(0);
    metrics::counter!(REPLAYED).increment(0);
    metrics::counter!(POINTS_TIMEOUTS).increment(0);
    metrics::counter!(ERRORS, "code" => "unavailable").increment(0);
    metrics::gauge!(CONNECTIONS, "kind" => "agent").increment(0.0);
    metrics::gauge!(CONNECTIONS, "kind" => "customer").increment(0.0);
    metrics::gauge!(QUEUE_DEPTH).increment(0.0);
    metrics::describe_gauge!(CONNECTIONS, "Open WebSockets by kind (agent, customer)");
    metrics::describe_counter!(FRAMES_IN, "Client frames received, by type");
    metrics::describe_counter!(FRAMES_OUT, "Frames written to sockets, by type");
    metrics::describe_counter!(ERRORS, "Error replies, by code");
    metrics::describe_histogram!(SEND_ACK_SECONDS, metrics::Unit::Seconds, "From a send frame to its ack");
    metrics::describe_histogram!(RELAY_SECONDS, metrics::Unit::Seconds, "From an inbox read to the frames queued on local sockets");
    metrics::describe_histogram!(REDIS_SECONDS, metrics::Unit::Seconds, "Redis round trips, by op");
    metrics::describe_counter!(SLOW_CONSUMERS, "Sockets closed because their outbound queue was full");
    metrics::describe_counter!(NODES_REAPED, "Gateway nodes this node found stopped (no heartbeat within the TTL) and cleaned up after");
    metrics::describe_gauge!(QUEUE_DEPTH, "Outbound queue depth of the socket that flushed last");
    metrics::describe_counter!(HTTP_REQUESTS, "HTTP requests by route and status");
    metrics::describe_histogram!(HTTP_SECONDS, metrics::Unit::Seconds, "HTTP request duration by route");
    metrics::describe_histogram!(INBOX_BATCH, "Entries per inbox read");
    metrics::describe_counter!(REPLAYED, "Events replayed on resume");
    metrics::describe_counter!(GAP_FILLS, "Gaps filled from the replay stream");
    metrics::describe_counter!(POINTS_TIMEOUTS, "Points actions that no worker answered in time (the agent got 503 unavailable)");
}

/// The `type` of a rendered server frame (`{"type":"message",...}`), from a
/// fixed set so the label stays bounded.
pub fn frame_type(frame: &str) -> &'static str {
    const TYPES: &[&str] = &[
        "hello", "ack", "error", "message", "edited", "deleted", "reactions", "typing", "receipt", "presence",
        "conversation", "points", "replay", "pong",
    ];
    let t = frame.strip_prefix("{\"type\":\"").and_then(|r| r.split('"').next()).unwrap_or("");
    TYPES.iter().find(|x| **x == t).copied().unwrap_or("other")
}

//! The bare WebSocket ceiling: many connections each keep `inflight`
//! messages in flight against the `ws-echo` server (fastwebsockets, no
//! logic); round trips per second is the most any relay on this machine
//! could hope for with the same client.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMsg;

#[derive(Debug, Clone, Default, Serialize)]
pub struct EchoReport {
    pub connections: usize,
    pub inflight: usize,
    pub size: usize,
    pub seconds: f64,
    pub round_trips: u64,
    pub round_trips_per_s: f64,
}

pub async fn bench(addr: SocketAddr, conns: usize, inflight: usize, size: usize, secs: u64) -> anyhow::Result<EchoReport> {
    let count = Arc::new(AtomicU64::new(0));
    let payload = "x".repeat(size);
    let start = Instant::now() + Duration::from_millis(300);
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(format!("ws://{addr}/"), Some(crate::client::ws_config()), false).await?;
        let count = count.clone();
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start).await;
            for _ in 0..inflight {
                if ws.send(WsMsg::Text(payload.clone().into())).await.is_err() {
                    return;
                }
            }
            while let Some(Ok(m)) = ws.next().await {
                if !matches!(m, WsMsg::Text(_)) {
                    continue;
                }
                if Instant::now() >= end {
                    break;
                }
                count.fetch_add(1, Ordering::Relaxed);
                if ws.send(WsMsg::Text(payload.clone().into())).await.is_err() {
                    return;
                }
            }
            let _ = ws.close(None).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = count.load(Ordering::Relaxed);
    Ok(EchoReport { connections: conns, inflight, size, seconds: secs as f64, round_trips: n, round_trips_per_s: n as f64 / secs as f64 })
}

//! The chat-list benchmark: seeds conversations straight into Redis in the
//! worker's format (a row hash per conversation written with
//! `schema::chatlist::encode`, the `chats:all`,
//! `chats:unread` and `chats:names` sorted sets; see `worker/src/chatlist.rs`
//! and `schema/src/keys.rs`), then times `GET /api/conversations?limit=50`
//! on loopback and reads the gateway's own histogram for the route.

use std::time::{Duration, Instant};

use anyhow::Context;
use schema::chatlist;
use schema::frames::{ConversationRow, CustomerRef};
use serde::Serialize;

/// Writes `count` rows under `prefix` in pipelines of 1,000; returns seconds taken.
pub async fn seed_rows(redis_url: &str, prefix: &str, count: usize) -> anyhow::Result<f64> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let t = Instant::now();
    let base_ts: i64 = 1_700_000_000_000;
    let mut i = 0;
    while i < count {
        let mut pipe = redis::pipe();
        for j in i..(i + 1000).min(count) {
            let id = format!("seed{j:06}");
            let name = format!("customer_{j:06}");
            let ts = base_ts + j as i64 * 1000;
            // Every tenth has unread messages, some of them more than 99
            // (the console's badge caps at "99+").
            let unread = if j % 10 == 0 { (j % 250) as u64 + 1 } else { 0 };
            let row = ConversationRow {
                id: id.clone(),
                customer: CustomerRef { id: id.clone(), username: name.clone(), avatar_url: None },
                preview: "Hello, I have a question about my order".into(),
                last_ts: ts,
                unread,
                last_seq: 3,
            };
            let hset = pipe.cmd("HSET").arg(format!("{prefix}{{c:{id}}}:row"));
            for (field, value) in chatlist::encode(&row, 2) {
                hset.arg(field).arg(value);
            }
            hset.ignore();
            pipe.zadd(format!("{prefix}chats:all"), &id, ts).ignore();
            if unread > 0 {
                pipe.zadd(format!("{prefix}chats:unread"), &id, ts).ignore();
            }
            pipe.zadd(format!("{prefix}chats:names"), format!("{name}\0{id}"), 0).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        i += 1000;
    }
    Ok(t.elapsed().as_secs_f64())
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PageReport {
    pub conversations: u64,
    pub samples: usize,
    pub client_p50_ms: f64,
    pub client_p90_ms: f64,
    pub client_p99_ms: f64,
    /// From the gateway's `http_request_duration_seconds{route="/api/conversations"}`
    /// buckets over the timed requests: share at or under 1 ms and 2 ms, and the
    /// bucket-interpolated median.
    pub server_share_le_1ms: f64,
    pub server_share_le_2ms: f64,
    pub server_p50_ms_estimate: f64,
    pub items_per_page: usize,
}

/// Cumulative bucket counts of the route's histogram: (le seconds, count).
fn buckets(metrics: &str, route: &str) -> Vec<(f64, f64)> {
    let needle = format!("route=\"{route}\"");
    let mut v: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with("http_request_duration_seconds_bucket") && l.contains(&needle))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            let c: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, c))
        })
        .collect();
    v.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    v
}

/// Times `samples` sequential page requests (after 50 warm-up ones).
/// `metrics` is the gateway's `CHAT_METRICS_ADDR`.
pub async fn time_page(gateway: &str, metrics: &str, user: &str, pass: &str, samples: usize) -> anyhow::Result<PageReport> {
    let http = reqwest::Client::new();
    let base = format!("http://{gateway}");
    let v: serde_json::Value =
        http.post(format!("{base}/api/login")).json(&serde_json::json!({"username": user, "password": pass})).send().await?.json().await?;
    let token = v["token"].as_str().context("login failed")?.to_string();
    let url = format!("{base}/api/conversations?limit=50");
    let mut total = 0;
    let mut items = 0;
    for _ in 0..50 {
        let v: serde_json::Value = http.get(&url).bearer_auth(&token).send().await?.json().await?;
        total = v["total"].as_u64().unwrap_or(0);
        items = v["items"].as_array().map(|a| a.len()).unwrap_or(0);
    }
    let metrics = |http: reqwest::Client| {
        let url = format!("http://{metrics}/metrics");
        async move { http.get(url).send().await?.text().await }
    };
    let before = buckets(&metrics(http.clone()).await?, "/api/conversations");
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let r = http.get(&url).bearer_auth(&token).send().await?;
        let _ = r.bytes().await?;
        times.push(t.elapsed());
    }
    let after = buckets(&metrics(http.clone()).await?, "/api/conversations");
    times.sort();
    let pct = |q: f64| times[((times.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0;
    let diff: Vec<(f64, f64)> =
        after.iter().map(|(le, c)| (*le, c - before.iter().find(|b| b.0 == *le).map(|b| b.1).unwrap_or(0.0))).collect();
    let n = diff.last().map(|d| d.1).unwrap_or(0.0).max(1.0);
    let share = |x: f64| diff.iter().filter(|d| d.0 <= x + 1e-12).map(|d| d.1).fold(0.0, f64::max) / n;
    let mut p50 = 0.0;
    let mut prev = (0.0, 0.0);
    for d in &diff {
        if d.1 >= n / 2.0 {
            let frac = if d.1 > prev.1 { (n / 2.0 - prev.1) / (d.1 - prev.1) } else { 0.0 };
            p50 = (prev.0 + (d.0 - prev.0) * frac) * 1000.0;
            break;
        }
        prev = *d;
    }
    Ok(PageReport {
        conversations: total,
        samples,
        client_p50_ms: pct(0.5),
        client_p90_ms: pct(0.9),
        client_p99_ms: pct(0.99),
        server_share_le_1ms: share(0.001),
        server_share_le_2ms: share(0.002),
        server_p50_ms_estimate: p50,
        items_per_page: items,
    })
}

/// Deletes every key under `prefix` (SCAN, then DEL in chunks).
pub async fn cleanup(redis_url: &str, prefix: &str) -> anyhow::Result<usize> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    let mut n = 0;
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(format!("{prefix}*")).arg("COUNT").arg(5000).query_async(&mut conn).await?;
        if !keys.is_empty() {
            n += keys.len();
            let _: () = redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(n)
}

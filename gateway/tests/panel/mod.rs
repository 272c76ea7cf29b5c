//! Helpers for the customer-panel tests: points actions, panel reads, order
//! events, the ledger sum and system messages of a conversation.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::Stack;

pub const SERVICE_TOKEN: &str = "dev-service-token";

/// A reply: status, body, and whether it was marked as a replay.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
}

pub async fn post(
    s: &Stack,
    g: usize,
    path: &str,
    token: Option<&str>,
    key: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut rb = s.http.post(format!("{}{}", s.url(g), path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(k) = key {
        rb = rb.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let replayed = r.headers().get("idempotent-replayed").is_some();
    Reply { status, body: r.json().await.unwrap_or(Value::Null), replayed }
}

pub async fn give(s: &Stack, g: usize, token: &str, cust: &str, key: &str, body: Value) -> Reply {
    post(s, g, &format!("/api/customers/{cust}/points"), Some(token), Some(key), Some(body)).await
}

pub async fn reset(s: &Stack, g: usize, token: &str, cust: &str, key: &str) -> Reply {
    post(s, g, &format!("/api/customers/{cust}/points/reset"), Some(token), Some(key), Some(json!({}))).await
}

pub async fn order_event(s: &Stack, body: Value) -> Reply {
    post(s, 0, "/api/orders/events", Some(SERVICE_TOKEN), None, Some(body)).await
}

pub fn event(order: &str, cust: &str, status: &str, ts: i64) -> Value {
    json!({
        "order_id": order,
        "customer_id": cust,
        "status": status,
        "items": [{"name": "Latte", "qty": 2, "price": 3.5}, {"name": "Croissant", "qty": 1, "price": 2.9}],
        "total": 9.9,
        "currency": "EUR",
        "ts": ts,
    })
}

/// Every ledger entry, following `next_cursor`.
pub async fn ledger(s: &Stack, token: &str, cust: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/customers/{cust}/transactions?limit=100&cursor={c}"),
            None => format!("/api/customers/{cust}/transactions?limit=100"),
        };
        let (st, v) = s.get(0, &path, token).await;
        assert_eq!(st, 200, "{v}");
        out.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

pub fn ledger_sum(entries: &[Value]) -> i64 {
    entries.iter().map(|e| e["amount"].as_i64().expect("amount")).sum()
}

pub async fn balance(s: &Stack, token: &str, cust: &str) -> i64 {
    let (st, v) = s.get(0, &format!("/api/customers/{cust}"), token).await;
    assert_eq!(st, 200, "{v}");
    v["points"].as_i64().expect("points")
}

/// System messages of a conversation's history (as persisted), once the
/// history satisfies `pred`.
pub async fn system_texts(s: &Stack, token: &str, conv: &str, pred: impl Fn(&Vec<String>) -> bool) -> Vec<String> {
    let mut last = vec![];
    for _ in 0..200 {
        let all = full_history(s, token, conv).await;
        last = all
            .iter()
            .filter(|m| m["kind"] == "system")
            .map(|m| m["text"].as_str().unwrap_or("").to_string())
            .collect();
        if pred(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("system messages never satisfied the condition; last: {last:#?}");
}

/// The whole persisted history, oldest first (pages of 100).
pub async fn full_history(s: &Stack, token: &str, conv: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/api/conversations/{conv}/messages?limit=100&before={b}"),
            None => format!("/api/conversations/{conv}/messages?limit=100"),
        };
        let (st, v) = s.get(0, &path, token).await;
        if st != 200 {
            return out;
        }
        let mut page = v["items"].as_array().cloned().unwrap_or_default();
        before = page.first().and_then(|m| m["seq"].as_u64());
        page.extend(out);
        out = page;
        if v["has_more"] != true || before.is_none() {
            return out;
        }
    }
}

/// Waits for the worker to drain, then returns the history.
pub async fn settled_history(s: &Stack, token: &str, conv: &str) -> Vec<Value> {
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.history_until(conv, token, |_| true).await
}

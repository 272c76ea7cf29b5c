//! Hostile input refused: per-address limits, idle sockets, login
//! throttling, forged or expired tokens, another customer's ids.

mod common;

use std::time::Duration;

use common::{Db, Stack};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn try_ws(addr: &str, token: &str) -> Result<common::Client, String> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(common::Client { ws, buf: Default::default(), hello: Value::Null, closed: None }),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn per_address_connection_cap_and_rate() {
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_MAX_CONNECTIONS_PER_IP", "3").env("CHAT_CONNECT_RATE_PER_IP", "100");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let addr = s.gateways[0].addr.clone();
    let a = try_ws(&addr, &tok).await.unwrap();
    let _b = try_ws(&addr, &tok).await.unwrap();
    let _c = try_ws(&addr, &tok).await.unwrap();
    let err = try_ws(&addr, &tok).await.err().expect("the fourth socket from one address is refused");
    assert!(err.contains("429"), "{err}");
    drop(a);
    // Once one closes, there is room again.
    let mut ok = false;
    for _ in 0..50 {
        if try_ws(&addr, &tok).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "a freed slot was never reused");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_address_connect_rate() {
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_CONNECT_RATE_PER_IP", "2");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let addr = s.gateways[0].addr.clone();
    let mut refused = 0;
    let mut open = vec![];
    for _ in 0..20 {
        match try_ws(&addr, &tok).await {
            Ok(c) => open.push(c),
            Err(e) => {
                assert!(e.contains("429"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "20 connects in a burst were all accepted at 2/s");
    assert!(open.len() >= 10, "the burst allowance (5x) was not honoured: {}", open.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_sockets_are_closed() {
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_IDLE_TIMEOUT_SECS", "2");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let mut quiet = s.ws(0, &tok).await;
    let mut chatty = s.ws(0, &tok).await;
    let mut listening = s.ws(0, &tok).await;
    let (_, mut listening) = tokio::join!(
        async {
            for _ in 0..6 {
                chatty.send(json!({"type":"ping"})).await;
                chatty.expect(|f| f["type"] == "pong").await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        },
        async move {
            // Sends nothing, but its WebSocket library answers the server's
            // pings (as a browser does) while it reads: not silent.
            listening.expect_none(Duration::from_secs(3), |_| false).await;
            listening
        }
    );
    // Closed with 1001; a client that left the pings unanswered may find the
    // connection already reset when its library finally writes the pongs,
    // before it reads the close frame (1006).
    let code = quiet.closed_code().await;
    assert!(code == 1001 || code == 1006, "a silent socket is closed with going away, got {code} {:?}", quiet.closed);
    assert!(listening.closed.is_none(), "a socket answering pings was closed: {:?}", listening.closed);
    listening.send(json!({"type":"ping"})).await;
    listening.expect(|f| f["type"] == "pong").await;
    chatty.send(json!({"type":"ping"})).await;
    chatty.expect(|f| f["type"] == "pong").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_is_throttled_and_sessions_are_checked() {
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let url = format!("{}/api/login", s.url(0));
    let mut statuses = vec![];
    for _ in 0..12 {
        let r = s.http.post(&url).json(&json!({"username":"demo","password":"wrong"})).send().await.unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    // Even the right password is refused while throttled.
    let r = s.http.post(&url).json(&json!({"username":"demo","password":"demo"})).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_or_expired_customer_tokens_are_refused() {
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let (tok, conv) = s.customer("vic").await;
    let parts: Vec<&str> = tok.split('.').collect();
    // Another customer's id with vic's signature.
    let forged = format!("cust.{}.{}.{}.{}", hex_of("mallory"), parts[2], parts[3], parts[4]);
    // A later expiry with the old signature.
    let extended = format!("cust.{}.{}.{}.{}", parts[1], parts[2], "99999999999", parts[4]);
    for bad in [forged.as_str(), extended.as_str(), "cust.zz.zz.1.zz", "nope"] {
        let (st, body) = s.get(0, &format!("/api/conversations/{conv}/messages"), bad).await;
        assert_eq!(st, 401, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
        assert!(try_ws(&s.gateways[0].addr, bad).await.is_err());
    }
}

fn hex_of(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn customers_see_nothing_of_other_customers() {
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let (a_tok, a) = s.customer("wendy").await;
    let (_, b) = s.customer("xavier").await;
    let mut b_ws = s.ws(0, &s.customer("xavier").await.0).await;
    b_ws.say(&b, "xavier's secret").await;
    let mut a_ws = s.ws(0, &a_tok).await;
    // Every REST route, with the other customer's ids.
    for path in [
        "/api/conversations".to_string(),
        format!("/api/conversations/{b}"),
        format!("/api/conversations/{b}/messages"),
        format!("/api/customers/{b}"),
    ] {
        let (st, body) = s.get(0, &path, &a_tok).await;
        assert_eq!(st, 403, "{path}: {body}");
        let text = body.to_string();
        assert!(!text.contains("secret") && !text.contains("xavier"), "{path} leaked: {text}");
    }
    // Their own data is fine.
    let (st, _) = s.get(0, &format!("/api/conversations/{a}/messages"), &a_tok).await;
    assert_eq!(st, 200);
    // Every frame type naming the other conversation.
    for (i, f) in [
        json!({"type":"send","conversation":b,"client_id":common::uuid(),"text":"x"}),
        json!({"type":"edit","conversation":b,"seq":1,"text":"x"}),
        json!({"type":"delete","conversation":b,"seq":1}),
        json!({"type":"react","conversation":b,"seq":1,"emoji":"fire","on":true}),
        json!({"type":"delivered","conversation":b,"seq":1}),
        json!({"type":"seen","conversation":b,"seq":1}),
        json!({"type":"resume","positions":{b.clone(): 0}}),
    ]
    .into_iter()
    .enumerate()
    {
        let rid = format!("r{i}");
        let mut f = f;
        f["rid"] = rid.clone().into();
        a_ws.send(f).await;
        let e = a_ws.reply(&rid).await;
        assert_eq!(e["code"], "forbidden", "{e}");
        assert!(!e.to_string().contains("secret"));
    }
    // Typing has no reply, and must not reach anyone either.
    a_ws.send(json!({"type":"typing","conversation":b})).await;
    b_ws.expect_none(Duration::from_millis(500), |f| f["type"] == "typing").await;
    // Nothing from the resume attempt leaked.
    a_ws.expect_none(Duration::from_millis(300), |f| f["type"] == "message").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_connection_cap() {
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_MAX_CONNECTIONS", "2");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let addr = s.gateways[0].addr.clone();
    let _a = try_ws(&addr, &tok).await.unwrap();
    let _b = try_ws(&addr, &tok).await.unwrap();
    let err = try_ws(&addr, &tok).await.err().expect("a full node refuses the third socket");
    assert!(err.contains("503"), "{err}");
    // REST still answers on a full node.
    let (st, _) = s.get(0, "/api/me", &tok).await;
    assert_eq!(st, 200);
}

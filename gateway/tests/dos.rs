//! Issue 20: what one client or one token can make a node hold or do.
//! - stalled readers: sockets that ask for a large replay and never read
//!   keep the node's memory bounded and are dropped;
//! - per-identity caps: sockets per customer / agent, and one send budget
//!   shared by an identity's sockets;
//! - revocation: logging out closes the session's sockets on every node.

mod common;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::{uuid, Client, Db, Stack};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMsg;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap()
}

/// The node's open customer sockets, from its metrics.
async fn customer_sockets(stack: &Stack, g: usize) -> f64 {
    let text = stack.http.get(format!("{}/metrics", stack.url(g))).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with("gateway_connections{") && l.contains("kind=\"customer\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

type RawWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A socket with a tiny receive buffer that sends one frame and never reads.
async fn stalled(addr: &str, token: &str, first: &str) -> RawWs {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(addr.parse().unwrap()).await.unwrap();
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.expect("ws connect");
    ws.send(WsMsg::Text(first.to_string().into())).await.unwrap();
    ws
}

/// Upgrade refused: the HTTP status and JSON body.
async fn refused(addr: &str, token: &str) -> (u16, Value) {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_ref().map(|b| serde_json::from_slice(b).unwrap()).unwrap_or(Value::Null);
            (resp.status().as_u16(), body)
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("upgrade accepted past the cap"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_keep_memory_bounded_and_are_dropped() {
    let mut stack = Stack::new(Db::Sqlite).await;
    stack.gw_env = vec![
        ("CHAT_MAX_SOCKETS_PER_CUSTOMER".into(), "1000".into()),
        ("CHAT_SEND_RATE".into(), "100000".into()),
        ("CHAT_SEND_RATE_PER_IDENTITY".into(), "100000".into()),
    ];
    stack.add_gateway();
    stack.wait_ready().await;
    let addr = stack.gateways[0].addr.clone();
    let pid = stack.gateways[0].child.id();
    let (tok, conv) = stack.customer("hog").await;
    // Fill the replay stream: 1,000 messages of 4,000 two-byte characters
    // (~8 KiB frames, ~8 MiB to replay).
    let mut c = stack.ws(0, &tok).await;
    let text = "é".repeat(4000);
    let mut rids = Vec::new();
    for _ in 0..1000 {
        let rid = uuid();
        c.send(json!({"type":"send","rid":rid,"conversation":conv,"client_id":rid,"text":text})).await;
        rids.push(rid);
    }
    for rid in &rids {
        let r = c.reply(rid).await;
        assert_eq!(r["type"], "ack", "{r}");
        c.buf.clear();
    }
    drop(c);
    let (tok2, conv2) = stack.customer("bystander").await;
    let mut other = stack.ws(0, &tok2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_sockets = customer_sockets(&stack, 0).await;
    let base = rss_kib(pid);

    let resume = json!({"type":"resume","positions":{ conv.as_str(): 0 }}).to_string();
    let mut stuck = Vec::new();
    for _ in 0..200 {
        stuck.push(stalled(&addr, &tok, &resume).await);
    }
    // Peak while they stall (the write deadline is 10 s), and another
    // client is served meanwhile.
    let mut peak = 0;
    let mut worst_ack = Duration::ZERO;
    for _ in 0..16 {
        let t = Instant::now();
        let r = other.say(&conv2, "still here").await;
        assert_eq!(r["type"], "ack", "{r}");
        worst_ack = worst_ack.max(t.elapsed());
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("RSS baseline {} MiB, peak with 200 stalled sockets {} MiB (+{} MiB); slowest ack meanwhile {:?}", base / 1024, peak / 1024, (peak.saturating_sub(base)) / 1024, worst_ack);
    assert!(peak < base + 150 * 1024, "RSS grew from {base} KiB to {peak} KiB");
    assert!(worst_ack < Duration::from_secs(2), "other client slowed down: {worst_ack:?}");
    drop(stuck);
    let mut n = f64::MAX;
    for _ in 0..150 {
        n = customer_sockets(&stack, 0).await;
        if n == base_sockets {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(n, base_sockets, "sockets left open after the stalled clients went");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_per_identity_are_capped_before_the_upgrade() {
    let mut stack = Stack::new(Db::Sqlite).await;
    stack.gw_env = vec![("CHAT_MAX_SOCKETS_PER_CUSTOMER".into(), "3".into()), ("CHAT_MAX_SOCKETS_PER_AGENT".into(), "2".into())];
    stack.add_gateway();
    stack.wait_ready().await;
    let addr = stack.gateways[0].addr.clone();
    let (tok, _) = stack.customer("many").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(stack.ws(0, &tok).await);
    }
    let (status, body) = refused(&addr, &tok).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("too many open sockets"), "{body}");
    // Another customer is not affected; a closed socket gives its slot back.
    let (tok2, _) = stack.customer("other").await;
    let _o = stack.ws(0, &tok2).await;
    let mut first = open.remove(0);
    first.ws.close(None).await.unwrap();
    drop(first);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {tok}").parse().unwrap());
        if let Ok((ws, _)) = tokio_tungstenite::connect_async(req).await {
            open.push(Client { ws, buf: VecDeque::new(), hello: Value::Null, closed: None });
            ok = true;
            break;
        }
    }
    assert!(ok, "slot not given back after a socket closed");
    let agent = stack.agent_token().await;
    let _a1 = stack.ws(0, &agent).await;
    let _a2 = stack.ws(0, &agent).await;
    let (status, body) = refused(&addr, &agent).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("agent"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_of_one_customer_share_one_send_budget() {
    let mut stack = Stack::new(Db::Sqlite).await;
    // Each socket alone could send 30 at once (bursts of 40); together the
    // customer may send 20 at once and 10/s after.
    stack.gw_env = vec![("CHAT_SEND_RATE".into(), "20".into()), ("CHAT_SEND_RATE_PER_IDENTITY".into(), "10".into())];
    stack.add_gateway();
    stack.wait_ready().await;
    let (tok, conv) = stack.customer("twins").await;
    let mut a = stack.ws(0, &tok).await;
    let mut b = stack.ws(0, &tok).await;
    let started = Instant::now();
    let mut rids = Vec::new();
    for i in 0..30 {
        for c in [&mut a, &mut b] {
            let rid = uuid();
            c.send(json!({"type":"send","rid":rid,"conversation":conv,"client_id":rid,"text":format!("m{i}")})).await;
            rids.push(rid);
        }
    }
    let sent_in = started.elapsed();
    let (mut acks, mut limited) = (0, 0);
    for (i, rid) in rids.iter().enumerate() {
        let c = if i % 2 == 0 { &mut a } else { &mut b };
        let r = c.reply(rid).await;
        match (r["type"].as_str(), r["code"].as_str()) {
            (Some("ack"), _) => acks += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            _ => panic!("unexpected reply {r}"),
        }
    }
    eprintln!("60 sends over two sockets in {sent_in:?}: {acks} acked, {limited} rate_limited");
    let allowed = 20 + (10.0 * sent_in.as_secs_f64()).ceil() as usize + 2;
    assert!(acks <= allowed, "{acks} acked, at most {allowed} allowed");
    assert_eq!(acks + limited, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_the_sessions_sockets_on_every_node() {
    let stack = Stack::start(2, 0, Db::Sqlite).await;
    let token = stack.agent_token().await;
    let other_session = stack.agent_token().await;
    // A bearer socket on gateway 0, a ticket socket (as the console) on gateway 1.
    let mut on_a = stack.ws(0, &token).await;
    let r: Value = stack.http.post(format!("{}/api/ws-ticket", stack.url(1))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let ticket = r["ticket"].as_str().expect("ticket");
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws?ticket={ticket}", stack.gateways[1].addr)).await.unwrap();
    let mut on_b = Client { ws, buf: VecDeque::new(), hello: Value::Null, closed: None };
    on_b.hello = on_b.expect(|f| f["type"] == "hello").await;
    let mut unrelated = stack.ws(1, &other_session).await;

    let t = Instant::now();
    let r = stack.http.post(format!("{}/api/logout", stack.url(0))).bearer_auth(&token).send().await.unwrap();
    assert!(r.status().is_success());
    let (ca, cb) = tokio::join!(on_a.closed_code(), on_b.closed_code());
    let took = t.elapsed();
    eprintln!("both sockets closed {took:?} after the logout");
    assert_eq!((ca, cb), (4001, 4001), "closed: {:?} {:?}", on_a.closed, on_b.closed);
    assert_eq!(on_a.closed.as_ref().unwrap().1, "session revoked");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // Another session of the same agent stays.
    unrelated.send(json!({"type":"ping"})).await;
    unrelated.expect(|f| f["type"] == "pong").await;
    assert!(unrelated.closed.is_none());
    let _ = on_b.ws.next().await;
}

//! Issue 20: the public HTTP port under abuse. Logins are counted before
//! the password is hashed and keyed on (username, client address); hashes
//! are bounded per node; the client address behind trusted proxies; slow
//! and many connections; security headers; `/metrics` off the public port;
//! the customer-token lifetime cap.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Db, Stack};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn stack(env: &[(&str, &str)]) -> Stack {
    let mut s = Stack::new(Db::Sqlite).await;
    for (k, v) in env {
        s.gw_env.push((k.to_string(), v.to_string()));
    }
    s.add_gateway();
    s.wait_ready().await;
    s
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(ip.parse::<IpAddr>().unwrap()).build().unwrap()
}

async fn login(http: &reqwest::Client, s: &Stack, pass: &str, xff: Option<&str>) -> reqwest::Response {
    let mut rb = http.post(format!("{}/api/login", s.url(0))).json(&json!({"username": "demo", "password": pass}));
    if let Some(x) = xff {
        rb = rb.header("x-forwarded-for", x);
    }
    rb.send().await.unwrap()
}

fn status_kb(pid: u32, field: &str) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines().find(|l| l.starts_with(field)).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Item 2: a burst of wrong passwords for one username from one address is
/// counted before hashing, so no more than the free attempts are evaluated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_burst_is_counted_before_hashing() {
    let s = stack(&[("CHAT_LOGIN_FREE_ATTEMPTS", "5")]).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let http = s.http.clone();
            let url = format!("{}/api/login", s.url(0));
            tokio::spawn(async move {
                let r = http.post(url).json(&json!({"username": "demo", "password": "wrong"})).send().await.unwrap();
                (r.status().as_u16(), r.headers().contains_key("retry-after"))
            })
        })
        .collect();
    let mut evaluated = 0;
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            (401, _) => evaluated += 1,
            (429, retry) => {
                assert!(retry, "429 without Retry-After");
                limited += 1
            }
            (503, _) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!("burst: {evaluated} evaluated, {limited} refused");
    assert!(evaluated <= 5, "{evaluated} wrong passwords were hashed out of a budget of 5");
    assert!(limited >= 45, "{limited} refused");
}

/// Item 2: concurrent hashes are bounded per node (each argon2 verify
/// takes ~19 MiB): 50 logins from 50 addresses at once raise the peak RSS
/// by a few hashes' worth, not 50, and those that wait too long get 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hashes_are_bounded() {
    let s = stack(&[("CHAT_TRUSTED_PROXIES", "127.0.0.1/32"), ("CHAT_MAX_CONCURRENT_HASHES", "2"), ("CHAT_HASH_WAIT_MS", "300")]).await;
    let pid = s.gateways[0].child.id();
    let before = status_kb(pid, "VmHWM");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let http = s.http.clone();
            let url = format!("{}/api/login", s.url(0));
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .header("x-forwarded-for", format!("10.9.0.{i}"))
                    .json(&json!({"username": "demo", "password": "wrong"}))
                    .send()
                    .await
                    .unwrap();
                let retry = r.headers().get("retry-after").is_some();
                let st = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                (st, retry, body)
            })
        })
        .collect();
    let mut busy = 0;
    for t in tasks {
        let (st, retry, body) = t.await.unwrap();
        match st {
            401 => {}
            503 => {
                assert!(retry, "503 without Retry-After");
                assert_eq!(body["error"]["code"], "unavailable", "{body}");
                busy += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    let grown = status_kb(pid, "VmHWM").saturating_sub(before);
    eprintln!("peak RSS grew {grown} kB; {busy} answered 503");
    assert!(busy > 0, "no login waited for a hashing slot");
    // 50 concurrent argon2 verifies would be ~950 MiB; 2 slots ~40 MiB.
    assert!(grown < 200 * 1024, "peak RSS grew {grown} kB");
}

/// Items 3 and 4: behind a trusted proxy, bad logins from one client do not
/// delay another client's login; without trust the header is ignored (both
/// are the proxy's address, and the pair is delayed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let trusted = stack(&[("CHAT_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    for _ in 0..20 {
        let st = login(&trusted.http, &trusted, "wrong", Some("10.0.0.1")).await.status().as_u16();
        assert!(st == 401 || st == 429, "{st}");
    }
    assert_eq!(login(&trusted.http, &trusted, "wrong", Some("10.0.0.1")).await.status().as_u16(), 429);
    assert_eq!(login(&trusted.http, &trusted, "demo", Some("10.0.0.2")).await.status().as_u16(), 200);

    let untrusted = stack(&[]).await;
    for _ in 0..20 {
        login(&untrusted.http, &untrusted, "wrong", Some("10.0.0.1")).await;
    }
    // The header named another client, but the peer is not trusted: same pair.
    assert_eq!(login(&untrusted.http, &untrusted, "demo", Some("10.0.0.2")).await.status().as_u16(), 429);
}

/// Item 4: an attacker who knows a username does not lock the agent out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_cannot_lock_out_the_agent() {
    let s = stack(&[]).await;
    let attacker = client_from("127.0.0.2");
    let mut refused = 0;
    for _ in 0..20 {
        let r = login(&attacker, &s, "wrong", None).await;
        if r.status().as_u16() == 429 {
            refused += 1;
            let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry >= 1);
        }
    }
    assert!(refused >= 14, "the attacker's address was delayed {refused} times of 20");
    let agent = client_from("127.0.0.1");
    let t = Instant::now();
    let r = login(&agent, &s, "demo", None).await;
    assert_eq!(r.status().as_u16(), 200, "the agent with the right password was refused");
    assert!(t.elapsed() < Duration::from_secs(3));
}

/// The delay grows per attempt after the free ones and ends: once it has
/// passed, the pair may try again (and a right password clears it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_grow_and_pass() {
    let s = stack(&[("CHAT_LOGIN_FREE_ATTEMPTS", "2"), ("CHAT_LOGIN_DELAY_MS", "400")]).await;
    assert_eq!(login(&s.http, &s, "wrong", None).await.status().as_u16(), 401);
    assert_eq!(login(&s.http, &s, "wrong", None).await.status().as_u16(), 401);
    // The second attempt set a 400 ms delay.
    assert_eq!(login(&s.http, &s, "demo", None).await.status().as_u16(), 429);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(login(&s.http, &s, "wrong", None).await.status().as_u16(), 401);
    // Now 800 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(login(&s.http, &s, "demo", None).await.status().as_u16(), 429);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(login(&s.http, &s, "demo", None).await.status().as_u16(), 200);
    // Cleared: free attempts again.
    assert_eq!(login(&s.http, &s, "wrong", None).await.status().as_u16(), 401);
}

fn raise_nofile() {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    let want = hard.min(20_000);
    rlimit::Resource::NOFILE.set(want, hard).unwrap();
}

async fn slow_conn(from: IpAddr, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    let mut c = sock.connect(to).await?;
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await?;
    Ok(c)
}

/// Item 5: 2,000 slowloris connections from one address are capped per
/// address and do not stop another client's /healthz and login; a
/// slowloris connection is closed after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_capped_and_timed_out() {
    raise_nofile();
    let s = stack(&[("CHAT_HEADER_READ_TIMEOUT_MS", "2000"), ("CHAT_MAX_HTTP_CONNECTIONS_PER_IP", "200")]).await;
    let to: SocketAddr = s.gateways[0].addr.parse().unwrap();
    let bad: IpAddr = "127.0.0.2".parse().unwrap();
    let mut conns = Vec::with_capacity(2000);
    for _ in 0..2000 {
        conns.push(slow_conn(bad, to).await.expect("connect"));
    }
    // The normal client is served at once.
    let t = Instant::now();
    let r = s.http.get(format!("{}/healthz", s.url(0))).timeout(Duration::from_secs(5)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(login(&s.http, &s, "demo", None).await.status().as_u16(), 200);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // Past the cap, the slow address got 503 and a close.
    let mut refused = 0;
    for c in conns.iter_mut().skip(200).take(100) {
        let mut buf = vec![0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), c.read(&mut buf)).await {
            if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503") {
                refused += 1;
            }
        }
    }
    assert!(refused >= 90, "{refused} of 100 connections past the cap were answered 503");
    // The admitted ones are closed by the header timeout.
    let started = Instant::now();
    let mut first = conns.swap_remove(0);
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(6), first.read(&mut buf)).await.expect("closed by the header timeout");
    eprintln!("slowloris connection ended after {:?}: {:?}", started.elapsed(), n.as_ref().map(|n| String::from_utf8_lossy(&buf[..*n]).to_string()));
    drop(conns);
    // And the slots come back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut again = slow_conn(bad, to).await.unwrap();
    again.write_all(b"1\r\n\r\n").await.unwrap();
    let mut resp = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(3), again.read(&mut resp)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&resp[..n]).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&resp[..n]));
}

/// Item 5: a connection that sends nothing at all is closed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_closed() {
    let s = stack(&[("CHAT_HEADER_READ_TIMEOUT_MS", "1000")]).await;
    let mut c = tokio::net::TcpStream::connect(&s.gateways[0].addr).await.unwrap();
    let mut buf = [0u8; 256];
    let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
    assert!(r.is_ok(), "an idle connection stayed open past the header timeout");
    // A keep-alive connection idle after a request is closed as well.
    let mut c = tokio::net::TcpStream::connect(&s.gateways[0].addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let n = c.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let r = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
    eprintln!("idle keep-alive: {r:?}");
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "an idle keep-alive connection stayed open: {r:?}");
}

/// Item 11: security headers, the widget's frame ancestors, /metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_and_metrics_port() {
    let s = stack(&[("CHAT_FRAME_ANCESTORS", "'self' https://crm.example.com")]).await;
    let r = s.http.get(format!("{}/", s.url(0))).send().await.unwrap();
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'self'") && !csp.contains("crm.example.com"), "{csp}");
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    // The page itself runs no inline script (what the CSP refuses).
    let html = r.text().await.unwrap();
    assert!(!html.contains("<script>") && !html.contains("<script type=\"module\">"), "{html}");

    let r = s.http.get(format!("{}/widget", s.url(0))).send().await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("frame-ancestors 'self' https://crm.example.com"), "{csp}");
    assert!(r.headers().get("x-frame-options").is_none());

    let r = s.http.get(format!("{}/api/me", s.url(0))).send().await.unwrap();
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");

    let r = s.http.get(format!("{}/metrics", s.url(0))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "/metrics is still on the public port");
    let m = s.http.get(format!("http://{}/metrics", s.gateways[0].metrics)).send().await.unwrap();
    assert_eq!(m.status().as_u16(), 200);
    assert!(m.text().await.unwrap().contains("http_requests_total"));
}

/// Item 10: a customer token living longer than CHAT_CUSTOMER_TOKEN_MAX_SECS is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_token_lifetime_is_capped() {
    let s = stack(&[("CHAT_CUSTOMER_TOKEN_MAX_SECS", "86400")]).await;
    let now = gateway::auth::now_secs();
    let secret = b"dev-only-customer-secret";
    let long = gateway::auth::sign_customer_token(secret, "cus_long", "long", now + 10 * 365 * 86400);
    let (st, body) = s.get(0, "/api/me", &long).await;
    assert_eq!(st, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("CHAT_CUSTOMER_TOKEN_MAX_SECS"), "{body}");
    let short = gateway::auth::sign_customer_token(secret, "cus_short", "short", now + 3600);
    assert_eq!(s.get(0, "/api/me", &short).await.0, 200);
}

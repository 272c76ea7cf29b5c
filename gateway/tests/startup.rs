//! A gateway as it starts: the console it serves is the one embedded in the
//! binary (whatever its working directory), and `/readyz` answering 200
//! means the node can serve, the dev seed included (a login right after
//! readiness works).
//!
//! Self-contained (the shared harness starts gateways in the repository's
//! directory): each gateway runs in a fresh temp dir with its own SQLite
//! file and key prefix, against the Redis at 127.0.0.1:6379.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Gateway {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the gateway binary in a new temp dir, `CHAT_WEB_DIR` unset.
fn start(env: &[(&str, &str)]) -> Gateway {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("chat-startup-{}", &id[..12]));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.current_dir(&dir)
        .env_remove("CHAT_WEB_DIR")
        .env("GATEWAY_ADDR", "127.0.0.1:0")
        .env("CHAT_METRICS_ADDR", "127.0.0.1:0")
        .env("REDIS_URL", "redis://127.0.0.1:6379")
        .env("DATABASE_URL", format!("sqlite://{}/chat.db", dir.display()))
        .env("CHAT_KEY_PREFIX", format!("t{}:", &id[..12]))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("gateway binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("gateway prints its address").unwrap();
        if let Some(a) = line.strip_prefix("gateway listening on ") {
            break a.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Gateway { child, url, dir }
}

async fn wait_ready(http: &reqwest::Client, g: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{}/readyz", g.url)).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "gateway not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_console_is_embedded_in_the_binary() {
    let index = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/dist/index.html"))
        .expect("web/dist/index.html exists (scripts/test.sh builds the console before cargo test)");
    let g = start(&[("CHAT_DEV", "1"), ("CHAT_DEMO_DATA", "0")]);
    let http = reqwest::Client::new();
    wait_ready(&http, &g).await;
    let r = http.get(format!("{}/", g.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let body = r.text().await.unwrap();
    assert!(!body.contains("not built yet"), "served the placeholder: {body}");
    assert_eq!(body, index, "/ is the built console's index.html");
    // A client route falls back to the console; a missing file is a 404.
    let r = http.get(format!("{}/conversations/alice", g.url)).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), index);
    let r = http.get(format!("{}/assets/missing.js", g.url)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn ready_in_dev_mode_means_the_demo_login_works() {
    let http = reqwest::Client::new();
    for attempt in 0..3 {
        let g = start(&[("CHAT_DEV", "1")]);
        wait_ready(&http, &g).await;
        let r = http
            .post(format!("{}/api/login", g.url))
            .json(&serde_json::json!({"username": "demo", "password": "demo"}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, 200, "start {attempt}: login right after /readyz: {}", r.text().await.unwrap_or_default());
    }
}

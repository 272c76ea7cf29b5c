//! Test harness: real gateway and worker processes on ephemeral ports,
//! against the real Redis (a key prefix per test) and a fresh SQLite file or
//! PostgreSQL database per test, so tests run in parallel.
#![allow(dead_code)]

pub mod proxy;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMsg;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub fn bin(name: &str) -> PathBuf {
    let gw = PathBuf::from(env!("CARGO_BIN_EXE_gateway"));
    let p = gw.with_file_name(name);
    assert!(p.exists(), "{} is missing: build the workspace first (cargo build --workspace)", p.display());
    p
}

pub struct Proc {
    pub child: Child,
    pub addr: String,
    /// Where the process serves `/metrics` (printed before its address line).
    pub metrics: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn sigterm(&mut self) {
        self.signal("TERM");
    }
    /// `STOP` (frozen: no heartbeat, sockets open) or `CONT`.
    pub fn signal(&mut self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Stack {
    pub prefix: String,
    pub dir: PathBuf,
    pub db: Db,
    pub db_url: String,
    pub pg_db: Option<String>,
    pub gateways: Vec<Proc>,
    pub workers: Vec<Proc>,
    pub extra_env: Vec<(String, String)>,
    /// Settings for gateways only / workers only (applied after `extra_env`).
    pub gw_env: Vec<(String, String)>,
    pub wk_env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

fn spawn(cmd: &mut Command, log: PathBuf, marker: &str) -> Proc {
    let logf = std::fs::File::create(&log).expect("log file");
    let mut child = cmd.stdout(Stdio::piped()).stderr(logf).spawn().expect("spawn process");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = String::new();
    let mut metrics = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(i) = line.find("metrics on http://") {
                    metrics = line[i + "metrics on http://".len()..].trim().to_string();
                }
                if let Some(i) = line.find(marker) {
                    addr = line[i + marker.len()..].trim().to_string();
                    break;
                }
            }
            _ => break,
        }
    }
    assert!(!addr.is_empty(), "process did not print `{marker}`; see {}", log.display());
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Proc { child, addr, metrics, log }
}

impl Stack {
    pub async fn new(db: Db) -> Stack {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("t{}:", &id[..12]);
        let dir = std::env::temp_dir().join(format!("chat-test-{}", &id[..12]));
        std::fs::create_dir_all(&dir).unwrap();
        let (db_url, pg_db) = match db {
            Db::Sqlite => (format!("sqlite://{}/chat.db", dir.display()), None),
            Db::Postgres => {
                let name = format!("t_{}", &id[..16]);
                let pool = sqlx::PgPool::connect(PG_ADMIN).await.expect("postgres reachable at 127.0.0.1:5432");
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.expect("create database");
                pool.close().await;
                (format!("postgres://postgres@127.0.0.1:5432/{name}"), Some(name))
            }
        };
        Stack { prefix, dir, db, db_url, pg_db, gateways: vec![], workers: vec![], extra_env: vec![], gw_env: vec![], wk_env: vec![], http: reqwest::Client::new() }
    }

    /// The usual stack: `g` gateways, `w` workers, dev mode without demo customers.
    pub async fn start(g: usize, w: usize, db: Db) -> Stack {
        let mut s = Stack::new(db).await;
        for _ in 0..w {
            s.add_worker();
        }
        for _ in 0..g {
            s.add_gateway();
        }
        s.wait_ready().await;
        s
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.extra_env.push((k.into(), v.into()));
        self
    }

    fn common_env(&self, cmd: &mut Command) {
        cmd.env("REDIS_URL", REDIS_URL)
            .env("DATABASE_URL", &self.db_url)
            .env("CHAT_KEY_PREFIX", &self.prefix)
            .env("CHAT_DEV", "1")
            .env("CHAT_DEMO_DATA", "0")
            .env("CHAT_CLAIM_IDLE_MS", "1500")
            .env("WORKER_CLAIM_INTERVAL_MS", "500")
            .env("RUST_LOG", "info");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
    }

    pub fn add_gateway(&mut self) -> usize {
        let n = self.gateways.len();
        let mut cmd = Command::new(bin("gateway"));
        self.common_env(&mut cmd);
        cmd.env("GATEWAY_ADDR", "127.0.0.1:0").env("CHAT_METRICS_ADDR", "127.0.0.1:0").env("CHAT_NODE_ID", self.node_id(n));
        for (k, v) in &self.gw_env {
            cmd.env(k, v);
        }
        let p = spawn(&mut cmd, self.dir.join(format!("gateway{n}.log")), "listening on http://");
        self.gateways.push(p);
        n
    }

    pub fn add_worker(&mut self) -> usize {
        let n = self.workers.len();
        let mut cmd = Command::new(bin("worker"));
        self.common_env(&mut cmd);
        cmd.env("WORKER_METRICS_ADDR", "127.0.0.1:0").env("WORKER_ID", format!("w{n}-{}", uuid::Uuid::new_v4().simple()));
        for (k, v) in &self.wk_env {
            cmd.env(k, v);
        }
        let p = spawn(&mut cmd, self.dir.join(format!("worker{n}.log")), "metrics on http://");
        self.workers.push(p);
        n
    }

    /// Replaces gateway `g` (killed or stopped) by a new process.
    pub fn restart_worker(&mut self, w: usize) {
        self.workers[w].kill9();
        let n = self.add_worker();
        self.workers.swap(w, n);
        self.workers.pop();
    }

    /// Gateway `g`'s node id (`CHAT_NODE_ID`).
    pub fn node_id(&self, g: usize) -> String {
        format!("{}g{g}", &self.prefix[..self.prefix.len() - 1])
    }

    pub fn url(&self, g: usize) -> String {
        format!("http://{}", self.gateways[g].addr)
    }

    /// Waits until every gateway reports ready and the demo agent exists.
    pub async fn wait_ready(&self) {
        for g in 0..self.gateways.len() {
            for _ in 0..200 {
                if let Ok(r) = self.http.get(format!("{}/readyz", self.url(g))).send().await {
                    if r.status().is_success() {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for _ in 0..200 {
            let r = self.http.post(format!("{}/api/login", self.url(0))).json(&json!({"username":"demo","password":"demo"})).send().await;
            if matches!(r, Ok(ref r) if r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("demo agent never became available");
    }

    pub async fn agent_token(&self) -> String {
        let r: Value = self
            .http
            .post(format!("{}/api/login", self.url(0)))
            .json(&json!({"username":"demo","password":"demo"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["token"].as_str().expect("token").to_string()
    }

    /// A customer token; returns (token, conversation id).
    pub async fn customer(&self, username: &str) -> (String, String) {
        let r: Value = self
            .http
            .post(format!("{}/api/dev/customer-token", self.url(0)))
            .json(&json!({ "username": username }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (r["token"].as_str().expect("token").to_string(), r["conversation"].as_str().unwrap().to_string())
    }

    pub async fn get(&self, g: usize, path: &str, token: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{}", self.url(g), path)).bearer_auth(token).send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn ws(&self, g: usize, token: &str) -> Client {
        Client::connect(&self.gateways[g].addr, token).await
    }

    /// Polls history until `pred` holds (the worker persists asynchronously).
    pub async fn history_until(&self, conv: &str, token: &str, pred: impl Fn(&Vec<Value>) -> bool) -> Vec<Value> {
        let mut last = vec![];
        for _ in 0..200 {
            let (s, v) = self.get(0, &format!("/api/conversations/{conv}/messages?limit=100"), token).await;
            if s == 200 {
                last = v["items"].as_array().cloned().unwrap_or_default();
                if pred(&last) {
                    return last;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("history never satisfied the condition; last: {last:#?}");
    }

    pub async fn list(&self, query: &str, token: &str) -> Value {
        let (s, v) = self.get(0, &format!("/api/conversations{query}"), token).await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// Polls the chat list until `pred` holds.
    pub async fn list_until(&self, query: &str, token: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..200 {
            last = self.list(query, token).await;
            if pred(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chat list never satisfied the condition; last: {last:#}");
    }

    pub fn redis(&self) -> redis::Client {
        redis::Client::open(REDIS_URL).unwrap()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for p in self.gateways.iter_mut().chain(self.workers.iter_mut()) {
            p.kill9();
        }
        if let Ok(mut c) = redis::Client::open(REDIS_URL).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query(&mut c).unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut c);
            }
        }
        if let Some(name) = &self.pg_db {
            let _ = Command::new("psql")
                .args(["-h", "127.0.0.1", "-U", "postgres", "-q", "-c", &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("test logs kept in {}", self.dir.display());
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client that buffers frames so tests can wait for one kind
/// while others keep arriving.
pub struct Client {
    pub ws: Ws,
    pub buf: VecDeque<Value>,
    pub hello: Value,
    pub closed: Option<(u16, String)>,
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Client {
    pub async fn connect(addr: &str, token: &str) -> Client {
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws connect");
        let mut c = Client { ws, buf: VecDeque::new(), hello: Value::Null, closed: None };
        c.hello = c.expect(|f| f["type"] == "hello").await;
        c
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(WsMsg::Text(v.to_string().into())).await.expect("ws send");
    }

    pub async fn send_raw(&mut self, s: String) {
        self.ws.send(WsMsg::Text(s.into())).await.expect("ws send");
    }

    async fn read_one(&mut self, wait: Duration) -> Option<Value> {
        // One deadline for the call: pings and pongs do not extend it.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) => return None,
                // No close frame: 1006, "abnormal closure" (RFC 6455 7.1.5).
                Ok(Some(Err(e))) => {
                    self.closed.get_or_insert((1006, e.to_string()));
                    return None;
                }
                Ok(Some(Ok(WsMsg::Text(t)))) => return Some(serde_json::from_str(&t).expect("server sends JSON")),
                Ok(Some(Ok(WsMsg::Close(f)))) => {
                    self.closed = Some(f.map(|f| (u16::from(f.code), f.reason.to_string())).unwrap_or((1005, String::new())));
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Waits (up to 10 s) for the first frame matching `pred`; others stay buffered.
    pub async fn expect(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.buf.iter().position(&pred) {
            return self.buf.remove(i).unwrap();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_one(left).await {
                Some(v) if pred(&v) => return v,
                Some(v) => self.buf.push_back(v),
                None => panic!("expected frame not received (closed: {:?}); {} buffered, the last: {}", self.closed, self.buf.len(), self.tail()),
            }
        }
    }

    /// The last few buffered frames, shortened, for failure messages.
    pub fn tail(&self) -> String {
        self.buf
            .iter()
            .rev()
            .take(4)
            .map(|v| {
                let s = v.to_string();
                if s.len() > 300 { format!("{}...", &s[..300]) } else { s }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Asserts no frame matching `pred` arrives within `wait`.
    pub async fn expect_none(&mut self, wait: Duration, pred: impl Fn(&Value) -> bool) {
        if let Some(v) = self.buf.iter().find(|v| pred(v)) {
            panic!("unexpected frame: {v}");
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.read_one(left).await {
                Some(v) if pred(&v) => panic!("unexpected frame: {v}"),
                Some(v) => self.buf.push_back(v),
                None => return,
            }
        }
    }

    /// Sends a message and returns its ack.
    pub async fn say(&mut self, conv: &str, text: &str) -> Value {
        // rid = client_id, so tests can map acks to the record.
        let rid = uuid();
        self.send(json!({"type":"send","rid":rid,"conversation":conv,"client_id":rid,"text":text})).await;
        self.reply(&rid).await
    }

    /// Agents: watches a conversation (its live events come to this socket
    /// from now on; those after `after` are replayed first). Returns the
    /// `replay` frame that answers it.
    pub async fn watch(&mut self, conv: &str, after: u64) -> Value {
        self.send(json!({"type":"watch","conversation":conv,"after":after})).await;
        let c = conv.to_string();
        self.expect(move |f| f["type"] == "replay" && f["conversation"] == c.as_str()).await
    }

    /// Agents: watches a conversation from its current end (nothing replayed).
    pub async fn watch_now(&mut self, conv: &str) -> Value {
        self.send(json!({"type":"watch","conversation":conv,"after":u64::MAX / 2})).await;
        let c = conv.to_string();
        self.expect(move |f| f["type"] == "replay" && f["conversation"] == c.as_str()).await
    }

    /// The ack or error answering `rid`.
    pub async fn reply(&mut self, rid: &str) -> Value {
        let rid = rid.to_string();
        self.expect(move |f| f["rid"] == rid.as_str()).await
    }

    /// Waits until the socket is closed by the server; returns the close code.
    pub async fn closed_code(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.closed.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match self.read_one(left).await {
                Some(v) => self.buf.push_back(v),
                None => break,
            }
        }
        self.closed.as_ref().map(|c| c.0).unwrap_or(0)
    }
}

pub fn is_msg(conv: &str, text: &str) -> impl Fn(&Value) -> bool {
    let conv = conv.to_string();
    let text = text.to_string();
    move |f: &Value| f["type"] == "message" && f["conversation"] == conv.as_str() && f["message"]["text"] == text.as_str()
}

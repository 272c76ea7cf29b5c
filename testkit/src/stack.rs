//! [`Stack`]: N gateways and M workers sharing one key prefix and one
//! database, with the REST helpers the tests share.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::bins::{bin_in, profile_dir};
use crate::client::Client;
use crate::db::{Database, Db};
use crate::keys::{drop_keys, redis_url};
use crate::process::{spawn, Proc};

/// What the Rust tests run with unless they say otherwise: dev mode without
/// demo customers, and short claim timers so a dead worker's entries move on
/// within a test.
pub const TEST_ENV: &[(&str, &str)] = &[
    ("CHAT_DEV", "1"),
    ("CHAT_DEMO_DATA", "0"),
    ("CHAT_CLAIM_IDLE_MS", "1500"),
    ("WORKER_CLAIM_INTERVAL_MS", "500"),
    ("RUST_LOG", "info"),
];

/// What load is measured under (the load tool's tests, the dashboards'
/// traffic): dev mode, no demo customers, a per-socket send rate high enough
/// not to be what limits, the product's own claim timers.
/// Every simulated client comes from a few loopback addresses and the
/// agents share one demo login, so the per-address HTTP cap and the
/// per-agent socket cap are lifted.
pub const LOAD_ENV: &[(&str, &str)] = &[
    ("CHAT_DEV", "1"),
    ("CHAT_DEMO_DATA", "0"),
    ("CHAT_SEND_RATE", "10000"),
    ("CHAT_MAX_HTTP_CONNECTIONS_PER_IP", "100000"),
    ("CHAT_MAX_SOCKETS_PER_AGENT", "100000"),
    ("RUST_LOG", "warn"),
];

pub struct Stack {
    pub prefix: String,
    /// Logs (`gateway<n>.log`, `worker<n>.log`) and the SQLite file.
    pub dir: PathBuf,
    pub db: Db,
    pub db_url: String,
    /// The PostgreSQL database's name.
    pub pg_db: Option<String>,
    pub redis_url: String,
    pub gateways: Vec<Proc>,
    pub workers: Vec<Proc>,
    /// Settings of every process, before `extra_env` ([`TEST_ENV`] by default).
    pub base_env: Vec<(String, String)>,
    /// Settings of every process (after `base_env`).
    pub extra_env: Vec<(String, String)>,
    /// Settings for gateways only / workers only (applied after `extra_env`).
    pub gw_env: Vec<(String, String)>,
    pub wk_env: Vec<(String, String)>,
    /// Gateways run with this open-file limit (soft and hard).
    pub gateway_nofile: Option<u64>,
    /// Where the gateway and worker binaries are (default: this build's).
    pub bin_dir: PathBuf,
    /// Keep `dir` when the stack is dropped (it is always kept after a panic).
    pub keep_dir: bool,
    pub http: reqwest::Client,
    /// Dropped after the processes are gone (fields drop after `Drop::drop`).
    _database: Database,
}

impl Stack {
    /// A stack without processes yet, in a new temporary directory.
    pub async fn new(db: Db) -> Stack {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("t{}:", &id[..12]);
        let dir = std::env::temp_dir().join(format!("chat-test-{}", &id[..12]));
        Stack::with(db, prefix, dir, false).await
    }

    /// A stack under `prefix`, with its logs (and SQLite file) in `dir`.
    pub async fn with(db: Db, prefix: String, dir: PathBuf, keep_dir: bool) -> Stack {
        std::fs::create_dir_all(&dir).expect("stack directory");
        let database = match db {
            Db::Sqlite => Database::sqlite_in(&dir),
            Db::Postgres => Database::postgres("stack").await,
        };
        Stack {
            prefix,
            dir,
            db,
            db_url: database.url.clone(),
            pg_db: database.pg_name.clone(),
            redis_url: redis_url(),
            gateways: vec![],
            workers: vec![],
            base_env: TEST_ENV.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            extra_env: vec![],
            gw_env: vec![],
            wk_env: vec![],
            gateway_nofile: None,
            bin_dir: profile_dir(),
            keep_dir,
            http: reqwest::Client::new(),
            _database: database,
        }
    }

    /// Replaces `base_env` (e.g. by [`LOAD_ENV`]).
    pub fn base(mut self, env: &[(&str, &str)]) -> Self {
        self.base_env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self
    }

    /// The usual stack: `g` gateways, `w` workers, dev mode without demo customers.
    pub async fn start(g: usize, w: usize, db: Db) -> Stack {
        Stack::new(db).await.spawn(g, w).await
    }

    /// Starts `w` workers, then `g` gateways, and waits until they are ready.
    pub async fn spawn(mut self, g: usize, w: usize) -> Stack {
        for _ in 0..w {
            self.add_worker();
        }
        for _ in 0..g {
            self.add_gateway();
        }
        self.wait_ready().await;
        self
    }

    /// Adds a setting for every process started from now on.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.extra_env.push((k.into(), v.into()));
        self
    }

    fn common_env(&self, cmd: &mut Command) {
        cmd.env("REDIS_URL", &self.redis_url).env("DATABASE_URL", &self.db_url).env("CHAT_KEY_PREFIX", &self.prefix);
        for (k, v) in self.base_env.iter().chain(&self.extra_env) {
            cmd.env(k, v);
        }
    }

    pub fn add_gateway(&mut self) -> usize {
        let n = self.gateways.len();
        let gateway = bin_in(&self.bin_dir, "gateway");
        // With a limit, util-linux's `prlimit` sets it and execs the gateway
        // (same process; the workspace forbids unsafe pre_exec).
        let mut cmd = match self.gateway_nofile {
            Some(files) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={files}:{files}")).arg("--").arg(gateway);
                c
            }
            None => Command::new(gateway),
        };
        // Uploads in the stack's directory (shared by its gateways, as one
        // volume would be), unless a test sets `CHAT_UPLOAD_URL`.
        cmd.env("CHAT_UPLOAD_URL", self.dir.join("uploads"));
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
        let mut cmd = Command::new(bin_in(&self.bin_dir, "worker"));
        self.common_env(&mut cmd);
        cmd.env("WORKER_METRICS_ADDR", "127.0.0.1:0").env("WORKER_ID", format!("w{n}-{}", uuid::Uuid::new_v4().simple()));
        for (k, v) in &self.wk_env {
            cmd.env(k, v);
        }
        let p = spawn(&mut cmd, self.dir.join(format!("worker{n}.log")), "metrics on http://");
        self.workers.push(p);
        n
    }

    /// Replaces worker `w` (killed or stopped) by a new process.
    pub fn restart_worker(&mut self, w: usize) {
        self.workers[w].kill9();
        let n = self.add_worker();
        self.workers.swap(w, n);
        self.workers.pop();
    }

    /// Gateway `g`'s node id (`CHAT_NODE_ID`).
    pub fn node_id(&self, g: usize) -> String {
        format!("{}g{g}", self.prefix.strip_suffix(':').unwrap_or(&self.prefix))
    }

    pub fn url(&self, g: usize) -> String {
        format!("http://{}", self.gateways[g].addr)
    }

    /// `gateway<n>=<pid>` and `worker<n>=<pid>` (the load tool's `--pid`).
    pub fn pids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.gateways.iter().enumerate().map(|(i, p)| format!("gateway{i}={}", p.pid())).collect();
        v.extend(self.workers.iter().enumerate().map(|(i, p)| format!("worker{i}={}", p.pid())));
        v
    }

    /// Waits until every gateway reports ready and the demo agent exists.
    pub async fn wait_ready(&self) {
        if self.gateways.is_empty() {
            return;
        }
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
        panic!("demo agent never became available; see {}", self.dir.display());
    }

    /// SIGTERM to every process (gateways first, so they drain into running
    /// workers), SIGKILL to those still running after `grace`.
    pub fn shutdown(&mut self, grace: Duration) {
        for p in self.gateways.iter_mut().chain(self.workers.iter_mut()) {
            p.sigterm();
        }
        for p in self.gateways.iter_mut().chain(self.workers.iter_mut()) {
            if !p.wait_exit(grace) {
                p.kill9();
            }
        }
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
        redis::Client::open(self.redis_url.as_str()).unwrap()
    }

    /// The stack as one JSON object (what the `testkit stack` binary prints).
    pub fn describe(&self) -> Value {
        let procs = |ps: &[Proc]| -> Vec<Value> {
            ps.iter()
                .map(|p| json!({"addr": p.addr, "url": format!("http://{}", p.addr), "metrics": p.metrics, "pid": p.pid(), "log": p.log}))
                .collect()
        };
        json!({
            "prefix": self.prefix,
            "db": self.db.name(),
            "database_url": self.db_url,
            "redis_url": self.redis_url,
            "dir": self.dir,
            "gateways": procs(&self.gateways),
            "workers": procs(&self.workers),
        })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for p in self.gateways.iter_mut().chain(self.workers.iter_mut()) {
            p.kill9();
        }
        drop_keys(&self.redis_url, &self.prefix);
        if std::thread::panicking() {
            eprintln!("test logs kept in {}", self.dir.display());
        } else if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // `_database` (a PostgreSQL database) is dropped after this.
    }
}

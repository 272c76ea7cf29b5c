//! Starts real gateway and worker processes for the load tool's tests, as
//! `gateway/tests/common` does: ephemeral ports, the local Redis with a key
//! prefix per test, a fresh SQLite file per test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The gateway/worker binaries next to this package's binary; built when missing.
pub fn bin(name: &str) -> PathBuf {
    let me = PathBuf::from(env!("CARGO_BIN_EXE_loadtest"));
    let p = me.with_file_name(name);
    if !p.exists() {
        let release = me.parent().and_then(|d| d.file_name()).is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "gateway", "-p", "worker", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
        assert!(ok && p.exists(), "{} is missing and could not be built", p.display());
    }
    p
}

pub struct Proc {
    pub child: Child,
    pub addr: String,
    /// Where the process serves `/metrics` (printed before its address line).
    pub metrics: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    std::thread::spawn(move || for _ in lines {});
    Proc { child, addr, metrics }
}

pub struct Stack {
    pub prefix: String,
    pub dir: PathBuf,
    pub gateways: Vec<Proc>,
    pub workers: Vec<Proc>,
}

impl Stack {
    /// `g` gateways and `w` workers in dev mode, with a high per-socket send rate.
    pub async fn start(g: usize, w: usize) -> Stack {
        Self::start_with(g, w, None).await
    }

    /// As [`Stack::start`]; with `gateway_nofile`, the gateways run with that
    /// open-file limit (soft and hard).
    pub async fn start_with(g: usize, w: usize, gateway_nofile: Option<u64>) -> Stack {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let prefix = format!("t{}:", &id[..12]);
        let dir = std::env::temp_dir().join(format!("chat-loadtest-{}", &id[..12]));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut s = Stack { prefix, dir, gateways: vec![], workers: vec![] };
        for n in 0..w {
            let mut cmd = Command::new(bin("worker"));
            s.env(&mut cmd);
            cmd.env("WORKER_METRICS_ADDR", "127.0.0.1:0").env("WORKER_ID", format!("w{n}-{id}"));
            let p = spawn(&mut cmd, s.dir.join(format!("worker{n}.log")), "metrics on http://");
            s.workers.push(p);
        }
        for n in 0..g {
            // With a limit, util-linux's `prlimit` sets it and execs the
            // gateway (same process; the workspace forbids unsafe pre_exec).
            let mut cmd = match gateway_nofile {
                Some(files) => {
                    let mut c = Command::new("prlimit");
                    c.arg(format!("--nofile={files}:{files}")).arg("--").arg(bin("gateway"));
                    c
                }
                None => Command::new(bin("gateway")),
            };
            s.env(&mut cmd);
            cmd.env("GATEWAY_ADDR", "127.0.0.1:0").env("CHAT_METRICS_ADDR", "127.0.0.1:0").env("CHAT_NODE_ID", format!("{}g{n}", &s.prefix[..s.prefix.len() - 1]));
            let p = spawn(&mut cmd, s.dir.join(format!("gateway{n}.log")), "listening on http://");
            s.gateways.push(p);
        }
        s.wait_ready().await;
        s
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("REDIS_URL", REDIS_URL)
            .env("DATABASE_URL", format!("sqlite://{}/chat.db", self.dir.display()))
            .env("CHAT_KEY_PREFIX", &self.prefix)
            .env("CHAT_DEV", "1")
            .env("CHAT_DEMO_DATA", "0")
            .env("CHAT_SEND_RATE", "10000")
            // Every simulated client comes from a few loopback addresses.
            .env("CHAT_MAX_HTTP_CONNECTIONS_PER_IP", "100000")
            .env("RUST_LOG", "warn");
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        for g in &self.gateways {
            for _ in 0..200 {
                if let Ok(r) = http.get(format!("http://{}/readyz", g.addr)).send().await {
                    if r.status().is_success() {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for _ in 0..200 {
            let r = http
                .post(format!("http://{}/api/login", self.gateways[0].addr))
                .json(&serde_json::json!({"username":"demo","password":"demo"}))
                .send()
                .await;
            if matches!(r, Ok(ref r) if r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("demo agent never became available");
    }

    /// The stack as the load tool sees it (our target, dev secret, demo agent).
    pub fn target(&self) -> loadtest::scenario::Stack {
        loadtest::scenario::Stack {
            target: loadtest::proto::Target::Ours,
            gateways: self.gateways.iter().map(|g| g.addr.parse().expect("addr")).collect(),
            secret: loadtest::scenario::DEV_SECRET.into(),
            agent_user: "demo".into(),
            agent_pass: "demo".into(),
            redis_url: Some(REDIS_URL.into()),
            key_prefix: self.prefix.clone(),
            log_shards: 4,
        }
    }

    pub fn pids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.gateways.iter().enumerate().map(|(i, p)| format!("gateway{i}={}", p.child.id())).collect();
        v.extend(self.workers.iter().enumerate().map(|(i, p)| format!("worker{i}={}", p.child.id())));
        v
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.gateways.clear();
        self.workers.clear();
        if let Ok(mut c) = redis::Client::open(REDIS_URL).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}*", self.prefix)).query(&mut c).unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut c);
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("logs kept in {}", self.dir.display());
        }
    }
}

//! The binaries work with the Redis users of the manifests (issue 20): a
//! redis-server of this test on an ephemeral port loads the very `users.acl`
//! of the `chat-redis` Secret (`default` off, one user per role, keys and
//! channels only under the prefix, no admin or dangerous commands). A gateway
//! and a worker log in with the URLs of that Secret (host and port pointed at
//! this server): a message is sent, acked and persisted, and Redis logged no
//! refused command. A wrong password, or none, stops the process at once with
//! a message that names the cause and never shows the password.

mod k8s;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s::{acl_users, docs, find, parse_redis_url};
use serde_json::json;
use testkit::{Db, Stack};

/// A redis-server of this test with the manifests' ACL file.
struct AclRedis {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Drop for AclRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl AclRedis {
    fn start(acl: &str) -> AclRedis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("chat-acl-redis-{port}-{}", testkit::uuid()));
        std::fs::create_dir_all(&dir).unwrap();
        let acl_file = dir.join("users.acl");
        std::fs::write(&acl_file, acl).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--aclfile")
            .arg(&acl_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        let r = AclRedis { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server on {port} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// `url` (one of the Secret's) with its host and port replaced by this server's.
    fn local(&self, url: &str) -> String {
        let u = parse_redis_url(url);
        format!("redis://{}:{}@127.0.0.1:{}", u.user, u.password, self.port)
    }
}

/// The first seed URL of the Secret's `key`.
fn secret_url(key: &str) -> String {
    let docs = docs();
    let urls = find(&docs, "Secret", "chat-redis")["stringData"][key].as_str().unwrap().to_string();
    urls.split(',').next().unwrap().trim().to_string()
}

fn manifests_acl() -> String {
    let docs = docs();
    find(&docs, "Secret", "chat-redis")["stringData"]["users.acl"].as_str().unwrap().to_string()
}

fn prefix() -> String {
    let docs = docs();
    find(&docs, "ConfigMap", "chat-config")["data"]["CHAT_KEY_PREFIX"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_and_worker_run_as_the_manifests_redis_users() {
    let redis = AclRedis::start(&manifests_acl());
    let users = acl_users(&docs());
    let admin = format!("redis://admin:{}@127.0.0.1:{}", users["admin"].passwords[0], redis.port);
    // Without credentials Redis answers nothing but NOAUTH.
    let mut anon = redis::Client::open(format!("redis://127.0.0.1:{}", redis.port)).unwrap().get_connection().unwrap();
    let e = redis::cmd("GET").arg("x").query::<Option<String>>(&mut anon).unwrap_err();
    assert_eq!(e.code(), Some("NOAUTH"), "{e}");
    drop(anon);

    let dir = std::env::temp_dir().join(format!("chat-test-acl-{}", &testkit::uuid()[..12]));
    // The manifests' users may touch only keys under the manifests' prefix.
    let mut s = Stack::with(Db::Sqlite, prefix(), dir, false).await;
    s.redis_url = admin.clone();
    s.gw_env.push(("REDIS_URL".into(), redis.local(&secret_url("GATEWAY_REDIS_URL"))));
    s.wk_env.push(("REDIS_URL".into(), redis.local(&secret_url("WORKER_REDIS_URL"))));
    let s = s.spawn(1, 1).await;

    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("acl-ann").await;
    let mut cust = s.ws(0, &cust_tok).await;
    let ack = cust.say(&conv, "hello through an authenticated Redis").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seq = ack["seq"].as_u64().unwrap();
    // An agent watching it gets it live (pub/sub on the gateway's channels).
    let mut agent = s.ws(0, &tok).await;
    agent.watch(&conv, 0).await;
    cust.send(json!({"type":"typing","conversation":conv})).await;
    let h = s.history_until(&conv, &tok, |h| h.iter().any(|m| m["seq"] == seq)).await;
    assert_eq!(h.iter().find(|m| m["seq"] == seq).unwrap()["text"], "hello through an authenticated Redis");
    // The chat list (written by the worker) has the conversation.
    s.list_until("", &tok, |v| v["items"].as_array().is_some_and(|i| i.iter().any(|c| c["id"] == conv.as_str()))).await;

    // The processes' users were never refused a command, key or channel.
    let mut c = redis::Client::open(admin.as_str()).unwrap().get_connection().unwrap();
    let log: redis::Value = redis::cmd("ACL").arg("LOG").query(&mut c).unwrap();
    assert_eq!(log, redis::Value::Array(vec![]), "Redis refused something: {log:?}");
    // Both roles really logged in as their own users.
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    for role in ["gateway", "worker"] {
        assert!(clients.contains(&format!("user={role} ")), "no connection of {role}: {clients}");
    }
    assert!(!clients.contains("user=default "), "{clients}");
}

/// Starts `bin` with `redis_url` and returns (exit status, stderr) once it
/// exits; fails the test if it is still running after `within`.
fn run_until_exit(bin: &Path, redis_url: &str, within: Duration) -> (std::process::ExitStatus, String) {
    let dir = std::env::temp_dir().join(format!("chat-test-acl-{}", &testkit::uuid()[..12]));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("stderr.log");
    let mut child = Command::new(bin)
        .env("REDIS_URL", redis_url)
        .env("DATABASE_URL", format!("sqlite://{}/chat.db", dir.display()))
        .env("CHAT_KEY_PREFIX", prefix())
        .env("CHAT_DEV", "1")
        .env("GATEWAY_ADDR", "127.0.0.1:0")
        .env("CHAT_METRICS_ADDR", "127.0.0.1:0")
        .env("WORKER_METRICS_ADDR", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} still running after {within:?} with a refused login:\n{}", bin.display(), std::fs::read_to_string(&log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (status, err)
}

#[test]
fn a_wrong_or_missing_password_stops_the_process_with_a_clear_error() {
    let redis = AclRedis::start(&manifests_acl());
    let wrong_pw = "not-the-password-9f3k";
    for name in ["gateway", "worker"] {
        let bin = testkit::bin(name);
        let user = name;
        // Wrong password: WRONGPASS, the user named, the password not shown.
        let (st, err) = run_until_exit(&bin, &format!("redis://{user}:{wrong_pw}@127.0.0.1:{}", redis.port), Duration::from_secs(20));
        assert!(!st.success(), "{name} exited successfully with a wrong password");
        assert!(err.contains("Redis refused the credentials of REDIS_URL"), "{name}: {err}");
        assert!(err.contains(&format!("redis://{user}:***@127.0.0.1:{}", redis.port)), "{name} names the URL without its password: {err}");
        assert!(!err.contains(wrong_pw), "{name} printed the password: {err}");
        // No credentials at all: the server's NOAUTH, at start, not on the first request.
        let (st, err) = run_until_exit(&bin, &format!("redis://127.0.0.1:{}", redis.port), Duration::from_secs(20));
        assert!(!st.success());
        assert!(err.contains("Redis refused the credentials of REDIS_URL") && err.contains("NOAUTH"), "{name}: {err}");
    }
}

//! The core end-to-end flow on a real 3-master Redis Cluster, started from
//! the local `redis-server` on ports of its own: every multi-key operation
//! must stay in one hash slot, or the cluster refuses it.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{is_msg, Db, Stack};
use serde_json::json;

struct Cluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.iter_mut() {
            let _ = n.kill();
            let _ = n.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port_pair() -> u16 {
    // A port whose cluster bus port (+10000) is free too.
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 55000 && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return p;
        }
    }
}

fn start_cluster() -> Cluster {
    let dir = std::env::temp_dir().join(format!("chat-cluster-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ports = vec![];
    let mut nodes = vec![];
    for _ in 0..3 {
        let p = free_port_pair();
        let child = Command::new("redis-server")
            .args(["--port", &p.to_string(), "--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .args(["--cluster-config-file", &format!("nodes-{p}.conf"), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        ports.push(p);
        nodes.push(child);
    }
    let c = Cluster { nodes, ports: ports.clone(), dir };
    for p in &ports {
        for _ in 0..100 {
            let ok = Command::new("redis-cli").args(["-p", &p.to_string(), "ping"]).output().map(|o| o.stdout.starts_with(b"PONG")).unwrap_or(false);
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
    for _ in 0..200 {
        let ok = ports.iter().all(|p| {
            Command::new("redis-cli")
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                .unwrap_or(false)
        });
        if ok {
            return c;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cluster never became ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn core_flow_on_a_three_master_redis_cluster() {
    let cluster = start_cluster();
    let urls: Vec<String> = cluster.ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect();
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_REDIS_CLUSTER", "1").env("CHAT_SEND_RATE", "1000");
    s.extra_env.push(("REDIS_URL".into(), urls.join(",")));
    s.add_worker();
    s.add_gateway();
    s.add_gateway();
    s.wait_ready().await;

    let agent_tok = s.agent_token().await;
    let mut agent = s.ws(0, &agent_tok).await;
    let mut convs = vec![];
    // Several customers so that conversations land on different masters.
    for i in 0..6 {
        let (tok, conv) = s.customer(&format!("cl{i}")).await;
        agent.watch(&conv, 0).await;
        let mut c = s.ws(1, &tok).await;
        let a = c.say(&conv, &format!("hello {i}")).await;
        assert_eq!(a["type"], "ack", "{a}");
        assert_eq!(a["seq"], 1);
        agent.expect(is_msg(&conv, &format!("hello {i}"))).await;
        let r = agent.say(&conv, &format!("hi {i}")).await;
        assert_eq!(r["seq"], 2);
        c.expect(is_msg(&conv, &format!("hi {i}"))).await;
        // Edit, react, seen: the other scripts.
        agent.send(json!({"type":"edit","rid":"e","conversation":conv,"seq":2,"text":"hi (edited)"})).await;
        assert_eq!(agent.reply("e").await["type"], "ack");
        c.expect(|f| f["type"] == "edited").await;
        c.send(json!({"type":"react","rid":"r","conversation":conv,"seq":2,"emoji":"heart","on":true})).await;
        assert_eq!(c.reply("r").await["type"], "ack");
        c.send(json!({"type":"seen","rid":"s","conversation":conv,"seq":2})).await;
        assert_eq!(c.reply("s").await["type"], "ack");
        agent.expect(|f| f["type"] == "receipt").await;
        convs.push((tok, conv));
    }
    // Resume from the other gateway.
    let (tok, conv) = &convs[0];
    let mut c = s.ws(0, tok).await;
    c.send(json!({"type":"resume","positions":{conv.clone(): 1}})).await;
    let r = c.expect(|f| f["type"] == "replay").await;
    assert_eq!(r["complete"], true);
    assert_eq!(r["to_seq"], 4);
    // History persisted by the worker; the chat list and search work.
    let h = s.history_until(conv, &agent_tok, |h| h.len() == 2 && h[1]["edited_at"].is_i64()).await;
    assert_eq!(h[1]["text"], "hi (edited)");
    // The count and the page are read one after the other (not atomically:
    // on a cluster the keys live on different masters), so wait for both.
    let l = s.list_until("", &agent_tok, |l| l["total"] == 6 && l["items"].as_array().map(Vec::len) == Some(6)).await;
    assert_eq!(l["items"].as_array().unwrap().len(), 6);
    let found = s.list("?search=cl3", &agent_tok).await;
    assert_eq!(found["items"][0]["id"], "cl3");
    // The keys really are spread over the masters.
    let mut used = 0;
    for p in &cluster.ports {
        let out = Command::new("redis-cli").args(["-p", &p.to_string(), "dbsize"]).output().unwrap();
        let n: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
        if n > 0 {
            used += 1;
        }
    }
    assert!(used >= 2, "all keys on one master");

    // The customer panel on a cluster: a points action (request stream and
    // reply list on their own slots) and an order card with an update.
    let (_, conv) = &convs[2];
    let r = s
        .http
        .post(format!("{}/api/customers/{conv}/points", s.url(0)))
        .bearer_auth(&agent_tok)
        .header("Idempotency-Key", "cluster-1")
        .json(&json!({"amount": 25}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    agent.expect(|f| f["type"] == "points" && f["balance"] == 25).await;
    let ts = schema::now_ms();
    for (status, t) in [("placed", ts), ("ready", ts + 1000)] {
        let body = json!({"order_id": "c-1", "customer_id": conv, "status": status,
            "items": [{"name": "Tea", "qty": 1}], "total": 2.5, "ts": t});
        let r = s.http.post(format!("{}/api/orders/events", s.url(1))).bearer_auth("dev-service-token").json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 202);
    }
    agent.expect(|f| f["type"] == "order" && f["order"]["status"] == "ready").await;
}

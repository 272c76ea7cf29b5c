//! Issue 20, durability and integrity: acks confirmed by a replica
//! (`CHAT_ACK_DURABILITY=replica`) surviving a primary's `kill -9` and the
//! replica's promotion; a counter that went back after a failover raised
//! again by the worker (collisions dead-lettered as `seq_conflict`, never
//! silently merged); dedupe scoped by sender (an order card cannot be
//! suppressed by a customer who guessed its `client_id`); the audit trail of
//! edits and deletes on SQLite and PostgreSQL.

mod common;
mod panel;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{uuid, Db, Stack};
use panel::{event, full_history, order_event};

use serde_json::{json, Value};

// ---------------------------------------------------------------- finding 8

#[tokio::test(flavor = "multi_thread")]
async fn a_customer_cannot_suppress_an_order_card_with_its_client_id() {
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("mallory").await;
    let mut cust = s.ws(0, &cust_tok).await;
    // The card's client_id is derivable by anyone from the order id.
    let card_cid = gateway::ids::stable_uuid("order-card:501");
    cust.send(json!({"type":"send","rid":"r1","conversation":conv,"client_id":card_cid,"text":"not an order"})).await;
    let a = cust.reply("r1").await;
    assert_eq!(a["type"], "ack", "{a}");
    let own_seq = a["seq"].as_u64().unwrap();

    let r = order_event(&s, event("501", &conv, "placed", schema::now_ms())).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let card_seq = r.body["card_seq"].as_u64().unwrap();
    assert_ne!(card_seq, own_seq, "the card was merged into the customer's message");
    let m = cust.expect(|f| f["type"] == "message" && f["message"]["kind"] == "order").await;
    assert_eq!(m["message"]["seq"], card_seq);

    // A retry of the customer's own send is still a duplicate of its own message.
    cust.send(json!({"type":"send","rid":"r2","conversation":conv,"client_id":card_cid,"text":"not an order"})).await;
    let again = cust.reply("r2").await;
    assert_eq!(again["seq"], own_seq, "{again}");
    assert_eq!(again["duplicate"], true, "{again}");

    let h = s.history_until(&conv, &tok, |h| h.iter().any(|m| m["kind"] == "order")).await;
    let mine = h.iter().find(|m| m["seq"] == own_seq).expect("customer's message");
    assert_eq!(mine["text"], "not an order");
    assert_eq!(mine["kind"], "customer");
    let card = h.iter().find(|m| m["seq"] == card_seq).expect("card");
    assert_eq!(card["kind"], "order");
    assert_eq!(card["text"], "Order #501");
    let _ = full_history;
}

// ---------------------------------------------------------------- finding 9

async fn edits_are_audited(db: Db) {
    let s = Stack::start(1, 1, db).await;
    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("edith").await;
    let mut cust = s.ws(0, &cust_tok).await;
    let seq = cust.say(&conv, "first words").await["seq"].as_u64().unwrap();
    cust.send(json!({"type":"edit","rid":"e1","conversation":conv,"seq":seq,"text":"second words"})).await;
    assert_eq!(cust.reply("e1").await["type"], "ack");
    cust.send(json!({"type":"edit","rid":"e2","conversation":conv,"seq":seq,"text":"third words"})).await;
    assert_eq!(cust.reply("e2").await["type"], "ack");
    cust.send(json!({"type":"delete","rid":"d1","conversation":conv,"seq":seq})).await;
    assert_eq!(cust.reply("d1").await["type"], "ack");

    let path = format!("/api/conversations/{conv}/messages/{seq}/edits");
    let deadline = Instant::now() + Duration::from_secs(10);
    let items = loop {
        let (st, v) = s.get(0, &path, &tok).await;
        assert_eq!(st, 200, "{v}");
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= 3 || Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(items.len(), 3, "{items:#?}");
    let actions: Vec<&str> = items.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["edit", "edit", "delete"]);
    let prev: Vec<&str> = items.iter().map(|e| e["previous_text"].as_str().unwrap_or("?")).collect();
    assert_eq!(prev, ["first words", "second words", "third words"]);
    for e in &items {
        assert_eq!(e["by_kind"], "customer");
        assert_eq!(e["by_id"], conv.as_str());
        assert_eq!(e["seq"], seq);
        assert!(e["pos"].as_u64().unwrap() > seq);
    }
    // Customers do not read the audit trail.
    let (st, _) = s.get(0, &path, &cust_tok).await;
    assert_eq!(st, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_and_deletes_are_audited_sqlite() {
    edits_are_audited(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn edits_and_deletes_are_audited_postgres() {
    edits_are_audited(Db::Postgres).await;
}

// ------------------------------------------- issue 17, item 5: late retries

/// A retry later than Redis's dedupe window (the conversation's recent
/// `CHAT_REPLAY_LEN` messages) gets a fresh position from Redis; the record
/// still holds the message once (`messages_client_once`), the original.
async fn late_retry_is_stored_once(db: Db) {
    let s = Stack::start(1, 1, db).await;
    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("lately").await;
    let mut cust = s.ws(0, &cust_tok).await;
    let cid = uuid();
    let send = |rid: &str, text: &str| json!({"type":"send","rid":rid,"conversation":conv,"client_id":cid,"text":text});
    cust.send(send("r1", "the original")).await;
    let first = cust.reply("r1").await["seq"].as_u64().unwrap();
    for i in 0..3 {
        cust.say(&conv, &format!("later {i}")).await;
    }
    s.history_until(&conv, &tok, |h| h.len() == 4).await;
    // The window moved past it: Redis no longer remembers the client_id.
    let mut r = s.redis().get_multiplexed_async_connection().await.unwrap();
    let st = format!("{}{{c:{conv}}}:st", s.prefix);
    let fields: Vec<String> = redis::cmd("HKEYS").arg(&st).query_async(&mut r).await.unwrap();
    let dedupe: Vec<&String> = fields.iter().filter(|f| f.ends_with(cid.as_str())).collect();
    assert_eq!(dedupe.len(), 1, "one dedupe field for the client_id: {fields:?}");
    let _: i64 = redis::cmd("HDEL").arg(&st).arg(dedupe[0]).query_async(&mut r).await.unwrap();

    cust.send(send("r2", "the original")).await;
    let late = cust.reply("r2").await;
    assert_eq!(late["type"], "ack", "{late}");
    let late_seq = late["seq"].as_u64().unwrap();
    assert_ne!(late_seq, first, "Redis forgot it: a fresh position");
    let after = cust.say(&conv, "after the late retry").await["seq"].as_u64().unwrap();

    let h = s.history_until(&conv, &tok, |h| h.iter().any(|m| m["seq"] == after)).await;
    let copies: Vec<&Value> = h.iter().filter(|m| m["client_id"] == cid.as_str()).collect();
    assert_eq!(copies.len(), 1, "stored twice: {copies:#?}");
    assert_eq!(copies[0]["seq"], first);
    assert_eq!(copies[0]["text"], "the original");
    assert!(h.iter().all(|m| m["seq"] != late_seq), "the late copy is in the record");
    assert_eq!(h.len(), 5, "{h:#?}");
    // Counted, and not a dead letter.
    let m = s.http.get(format!("http://{}/metrics", s.workers[0].addr)).send().await.unwrap().text().await.unwrap();
    assert!(m.lines().any(|l| l.starts_with("worker_late_duplicates_total") && l.ends_with(" 1")), "{m}");
    let letters: i64 = redis::cmd("XLEN").arg(format!("{}deadletter", s.prefix)).query_async(&mut r).await.unwrap();
    assert_eq!(letters, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_later_than_the_dedupe_window_is_stored_once_sqlite() {
    late_retry_is_stored_once(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_later_than_the_dedupe_window_is_stored_once_postgres() {
    late_retry_is_stored_once(Db::Postgres).await;
}

// ---------------------------------------------------------------- findings 12 and 13

/// A primary and its replica, `redis-server` processes of this test on free
/// ports, without persistence (the case where a failover is what keeps data).
struct Pair {
    primary: Child,
    replica: Child,
    pport: u16,
    rport: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn redis_server(port: u16, extra: &[&str]) -> Child {
    // `--dir`: a replica's full sync still writes an RDB file there.
    let dir = std::env::temp_dir().to_string_lossy().to_string();
    let mut args = vec!["--port".to_string(), port.to_string(), "--save".into(), "".into(), "--appendonly".into(), "no".into(), "--bind".into(), "127.0.0.1".into(), "--dir".into(), dir, "--dbfilename".into(), format!("dump-{port}.rdb"),
        // A full sync starts at once (Redis waits 5 s for more replicas by default).
        "--repl-diskless-sync-delay".into(), "0".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let c = Command::new("redis-server").args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("redis-server on PATH");
    for _ in 0..100 {
        if redis::Client::open(format!("redis://127.0.0.1:{port}")).and_then(|c| c.get_connection()).is_ok() {
            return c;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server on {port} did not start");
}

fn cmd_on(port: u16, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}"))?.get_connection()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c)
}

impl Pair {
    fn start() -> Pair {
        let (pport, rport) = (free_port(), free_port());
        let primary = redis_server(pport, &[]);
        let replica = redis_server(rport, &["--replicaof", "127.0.0.1", &pport.to_string()]);
        for _ in 0..400 {
            let info: String = redis::Client::open(format!("redis://127.0.0.1:{rport}"))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
                .unwrap_or_default();
            if info.contains("master_link_status:up") {
                return Pair { primary, replica, pport, rport };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("replica never linked up");
    }

    fn url(port: u16) -> String {
        format!("redis://127.0.0.1:{port}")
    }

    fn signal(c: &Child, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(c.id().to_string()).status();
    }

    /// After a failover: a new replica of the promoted one (the old primary's place).
    fn add_replica(&mut self) {
        let port = free_port();
        let mut c = redis_server(port, &["--replicaof", "127.0.0.1", &self.rport.to_string()]);
        std::mem::swap(&mut self.primary, &mut c);
        let _ = c.kill();
        let _ = c.wait();
        for _ in 0..400 {
            let info: String = redis::Client::open(Pair::url(port))
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c))
                .unwrap_or_default();
            if info.contains("master_link_status:up") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("new replica never linked up");
    }

    /// `kill -9` of the primary, then the replica takes over.
    fn fail_over(&mut self) {
        let _ = self.primary.kill();
        let _ = self.primary.wait();
        cmd_on(self.rport, &["REPLICAOF", "NO", "ONE"]).expect("promote the replica");
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for c in [&mut self.primary, &mut self.replica] {
            Pair::signal(c, "CONT");
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Replaces every gateway and worker by new processes pointed at `redis`.
async fn restart_on(s: &mut Stack, redis: &str) {
    for p in s.gateways.iter_mut().chain(s.workers.iter_mut()) {
        p.kill9();
    }
    s.gateways.clear();
    s.workers.clear();
    s.extra_env.retain(|(k, _)| k != "REDIS_URL");
    s.extra_env.push(("REDIS_URL".into(), redis.to_string()));
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
}

/// Every message of a conversation in the record, or the status of the
/// page that failed (never a silently partial history).
async fn record(s: &Stack, conv: &str, tok: &str) -> Result<Vec<Value>, String> {
    let mut out: Vec<Value> = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/api/conversations/{conv}/messages?limit=100&before={b}"),
            None => format!("/api/conversations/{conv}/messages?limit=100"),
        };
        let (st, v) = s.get(0, &path, tok).await;
        if st != 200 {
            return Err(format!("{path}: {st} {v}"));
        }
        let mut page = v["items"].as_array().cloned().unwrap_or_default();
        before = page.first().and_then(|m| m["seq"].as_u64());
        page.extend(out);
        out = page;
        if v["has_more"] != true || before.is_none() {
            return Ok(out);
        }
    }
}

/// Polls the record until `pred` holds or `within` passes; a page that keeps
/// failing fails the test with its status.
async fn record_until(s: &Stack, conv: &str, tok: &str, within: Duration, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let h = record(s, conv, tok).await;
        match h {
            Ok(h) if pred(&h) || Instant::now() > deadline => return h,
            Err(e) if Instant::now() > deadline => panic!("history unreadable: {e}"),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn by_client(h: &[Value]) -> BTreeMap<String, u64> {
    let mut seqs = BTreeSet::new();
    let mut out = BTreeMap::new();
    for m in h {
        let seq = m["seq"].as_u64().unwrap();
        assert!(seqs.insert(seq), "seq {seq} twice in the record");
        if let Some(c) = m["client_id"].as_str() {
            assert!(out.insert(c.to_string(), seq).is_none(), "client_id {c} twice in the record");
        }
    }
    out
}

/// Sends `n` messages in bursts of 10 (each burst in flight at once);
/// returns the acked (client_id -> seq) and the client_ids that got an error.
async fn burst(c: &mut common::Client, conv: &str, n: usize, tag: &str) -> (BTreeMap<String, u64>, Vec<String>) {
    let (mut acked, mut failed) = (BTreeMap::new(), Vec::new());
    for b in 0..n.div_ceil(10) {
        let cids: Vec<String> = (0..10.min(n - b * 10)).map(|_| uuid()).collect();
        for (i, cid) in cids.iter().enumerate() {
            c.send(json!({"type":"send","rid":cid,"conversation":conv,"client_id":cid,"text":format!("{tag} {b}.{i}")})).await;
        }
        for cid in cids {
            let r = c.reply(&cid).await;
            if r["type"] == "ack" {
                acked.insert(cid, r["seq"].as_u64().unwrap());
            } else {
                assert_eq!(r["code"], "unavailable", "{r}");
                failed.push(cid);
            }
        }
    }
    (acked, failed)
}

/// What a client's outbox does with `unavailable`: retries the same
/// `client_id` until it is acked (or `within` passes). Returns the seq.
async fn send_until_acked(c: &mut common::Client, conv: &str, cid: &str, text: &str, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    for attempt in 0.. {
        let rid = format!("{cid}-{attempt}");
        c.send(json!({"type":"send","rid":rid,"conversation":conv,"client_id":cid,"text":text})).await;
        let r = c.reply(&rid).await;
        if r["type"] == "ack" {
            return r["seq"].as_u64().unwrap();
        }
        assert_eq!(r["code"], "unavailable", "{r}");
        assert!(Instant::now() < deadline, "{cid} never acked: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread")]
async fn replica_acks_survive_a_primary_kill_and_failover() {
    let mut pair = Pair::start();
    // The wait stays below the Redis timeout (2 s, which the gateway checks at
    // startup) and is long enough for a replica on a busy CI machine.
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_SEND_RATE", "5000").env("CHAT_ACK_DURABILITY", "replica").env("CHAT_ACK_WAIT_MS", "1000");
    s.extra_env.push(("REDIS_URL".into(), Pair::url(pair.pport)));
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("vera").await;
    let mut cust = s.ws(0, &cust_tok).await;

    // No replica answering: no ack. The message may exist on the primary
    // (numbered, unconfirmed) or not; the client retries the same client_id
    // once the replica is back and gets one seq, stored once (checked below).
    Pair::signal(&pair.replica, "STOP");
    let cid = uuid();
    cust.send(json!({"type":"send","rid":cid,"conversation":conv,"client_id":cid,"text":"while the replica sleeps"})).await;
    let r = cust.reply(&cid).await;
    assert_eq!(r["code"], "unavailable", "acked without a replica: {r}");
    Pair::signal(&pair.replica, "CONT");
    let seq = send_until_acked(&mut cust, &conv, &cid, "while the replica sleeps", Duration::from_secs(30)).await;
    let mut acked = BTreeMap::from([(cid, seq)]);

    let (a, f) = burst(&mut cust, &conv, 150, "before").await;
    acked.extend(a);
    for cid in f {
        let seq = send_until_acked(&mut cust, &conv, &cid, "before, retried", Duration::from_secs(30)).await;
        acked.insert(cid, seq);
    }
    // Kill the primary while a burst is in flight.
    let cids: Vec<String> = (0..60).map(|_| uuid()).collect();
    for (i, cid) in cids.iter().enumerate() {
        cust.send(json!({"type":"send","rid":cid,"conversation":conv,"client_id":cid,"text":format!("around {i}")})).await;
        if i == 30 {
            pair.fail_over();
        }
    }
    let mut unacked = vec![];
    for cid in &cids {
        let r = cust.reply(cid).await;
        if r["type"] == "ack" {
            acked.insert(cid.clone(), r["seq"].as_u64().unwrap());
        } else {
            unacked.push(cid.clone());
        }
    }
    let max_acked = *acked.values().max().unwrap();

    // The promoted replica gets a replica of its own (replica acks need one).
    pair.add_replica();
    restart_on(&mut s, &Pair::url(pair.rport)).await;
    let mut cust = s.ws(0, &cust_tok).await;
    // The client retries what was not acked (same client_id); then new sends.
    for cid in &unacked {
        let seq = send_until_acked(&mut cust, &conv, cid, "retried", Duration::from_secs(30)).await;
        acked.insert(cid.clone(), seq);
    }
    let (mut after, f) = burst(&mut cust, &conv, 100, "after").await;
    for cid in f {
        let seq = send_until_acked(&mut cust, &conv, &cid, "after, retried", Duration::from_secs(30)).await;
        after.insert(cid, seq);
    }
    for seq in after.values() {
        assert!(*seq > max_acked, "a new send reused seq {seq} (acked up to {max_acked})");
    }
    acked.extend(after);

    let h = record_until(&s, &conv, &tok, Duration::from_secs(30), |h| h.len() >= acked.len()).await;
    let stored = by_client(&h);
    for (cid, seq) in &acked {
        assert_eq!(stored.get(cid), Some(seq), "acked message {cid} (seq {seq}) is not in the record at its seq");
    }
    eprintln!("acked {} ({} unacked around the kill, retried), record {}", acked.len(), unacked.len(), h.len());
}

/// Dead letters of reason `seq_conflict`: the client_ids of their messages.
fn conflict_letters(port: u16, prefix: &str) -> Vec<(String, u64)> {
    let mut c = redis::Client::open(Pair::url(port)).unwrap().get_connection().unwrap();
    let r: redis::streams::StreamRangeReply = redis::cmd("XRANGE").arg(format!("{prefix}deadletter")).arg("-").arg("+").query(&mut c).unwrap();
    r.ids
        .iter()
        .filter(|e| e.get::<String>("reason").as_deref() == Some("seq_conflict"))
        .filter_map(|e| {
            let bytes: Vec<u8> = e.get("e")?;
            match schema::envelope::decode::<schema::envelope::LogEvent>(&bytes).ok()? {
                schema::envelope::LogEvent::Message { client_id, seq, .. } => Some((client_id?, seq)),
                _ => None,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_acks_lost_in_a_failover_are_never_silently_merged() {
    let mut pair = Pair::start();
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_SEND_RATE", "5000");
    s.extra_env.push(("REDIS_URL".into(), Pair::url(pair.pport)));
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("lena").await;
    let mut cust = s.ws(0, &cust_tok).await;
    let (mut acked, _) = burst(&mut cust, &conv, 20, "replicated").await;
    cmd_on(pair.pport, &["WAIT", "1", "2000"]).unwrap();
    // The replica falls behind: cut off (`REPLICAOF NO ONE` stands in for a
    // partition; a SIGSTOP does not do, the kernel keeps the stream's bytes
    // for when it wakes). What is acked now lives in the primary's memory only.
    cmd_on(pair.rport, &["REPLICAOF", "NO", "ONE"]).unwrap();
    let (lost, f) = burst(&mut cust, &conv, 10, "memory only").await;
    assert!(f.is_empty());
    acked.extend(lost.clone());
    let h = record_until(&s, &conv, &tok, Duration::from_secs(20), |h| h.len() >= 30).await;
    assert_eq!(h.len(), 30, "the worker persisted the acked messages before the failover");
    let record_last = h.iter().map(|m| m["seq"].as_u64().unwrap()).max().unwrap();
    pair.fail_over();
    let n = cmd_on(pair.rport, &["HGET", &format!("{}{{c:{conv}}}:st", s.prefix), "n"]);
    eprintln!("promoted replica's counter: {n:?}");
    restart_on(&mut s, &Pair::url(pair.rport)).await;

    // The promoted replica's counter is behind the record: the first sends
    // collide; none may be merged into an old message or vanish.
    let mut cust = s.ws(0, &cust_tok).await;
    let mut after = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (a, f) = burst(&mut cust, &conv, 5, "after").await;
        assert!(f.is_empty());
        let fresh = a.values().any(|&s| s > record_last);
        after.extend(a);
        if fresh {
            break;
        }
        assert!(Instant::now() < deadline, "sends never got a position above the record's {record_last}: {after:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (a, _) = burst(&mut cust, &conv, 10, "later").await;
    for seq in a.values() {
        assert!(*seq > record_last, "seq {seq} at or below the record's last {record_last}");
    }
    after.extend(a);

    // Every message acked before the failover is still in the record as it was.
    let expect_after: BTreeSet<&String> = after.iter().filter(|(_, &s)| s > record_last).map(|(c, _)| c).collect();
    let h = record_until(&s, &conv, &tok, Duration::from_secs(20), |h| {
        let b = by_client(h);
        expect_after.iter().all(|c| b.contains_key(*c))
    })
    .await;
    let stored = by_client(&h);
    for (cid, seq) in &lost {
        assert_eq!(stored.get(cid), Some(seq), "record lost the pre-failover message at {seq}");
    }
    // After the failover: each acked message is in the record at its seq, or
    // (it collided) in the dead letters as seq_conflict. None silently dropped.
    let letters = conflict_letters(pair.rport, &s.prefix);
    let collided: Vec<_> = after.iter().filter(|(_, &s)| s <= record_last).collect();
    assert!(!collided.is_empty(), "the test meant to provoke collisions: {after:?}");
    // The worker raised the counter after the first collisions: the sends
    // did not have to walk through every lost position (10) one by one.
    assert!(collided.len() < 10, "the counter was not raised: {} sends collided", collided.len());
    for (cid, seq) in &after {
        let kept = stored.get(cid) == Some(seq) || letters.iter().any(|(c, s)| c == cid && s == seq);
        assert!(kept, "acked message {cid} (seq {seq}) is neither in the record nor dead-lettered");
    }
    for (cid, seq) in &collided {
        assert!(letters.iter().any(|(c, s)| c == *cid && s == *seq), "collided {cid} at {seq} not dead-lettered as seq_conflict");
    }
    let metrics = s.http.get(format!("http://{}/metrics", s.workers[0].addr)).send().await.unwrap().text().await.unwrap();
    let line = metrics.lines().find(|l| l.starts_with("worker_dead_letters_total{reason=\"seq_conflict\"}")).expect("metric");
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= collided.len() as f64, "{line}");
    eprintln!("record last {record_last}; after failover {} sends, {} collided, dead letters {}", after.len(), collided.len(), letters.len());
}

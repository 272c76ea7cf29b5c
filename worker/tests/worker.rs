//! The worker against the real Redis (127.0.0.1:6379, or `REDIS_URL`) and a
//! real SQL store: a fresh SQLite file per test, and PostgreSQL for the main
//! flow. Each test uses its own key prefix and deletes its keys at the end.

use std::collections::HashMap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use schema::envelope::{self, LogEvent, Relay};
use schema::frames::{ConversationRow, CustomerRef, MessageKind, ServerFrame, Side, UserKind, UserRef};
use schema::keys::{shard_of, Keys, FIELD, WORKER_GROUP};
use sqlx::{Connection, Executor};
use store::{ConversationState, Store};
use testkit::{Database, KeyPrefix};
use worker::{ChatList, Config, StepReport, Worker};

const SHARDS: u32 = 2;

fn redis_url() -> String {
    testkit::redis_url()
}

/// A key prefix, a database and a Redis connection of one test (from the
/// test kit); its keys and database go when it goes out of scope, pass or fail.
struct Harness {
    prefix: String,
    keys: Keys,
    db_url: String,
    store: Store,
    redis: ConnectionManager,
    // Dropped after `store` (fields drop in order): keys, then the database.
    _prefix: KeyPrefix,
    _db: Database,
}

impl Harness {
    async fn new(pg: bool) -> Harness {
        let guard = KeyPrefix::random("t-");
        let prefix = guard.prefix.clone();
        let db = if pg { Database::postgres("worker").await } else { Database::sqlite("worker") };
        let db_url = db.url.clone();
        let store = Store::connect(&db_url).await.expect("store");
        let client = redis::Client::open(redis_url()).expect("redis url");
        let redis = ConnectionManager::new(client).await.expect("redis");
        Harness { keys: Keys::new(prefix.clone()), prefix, db_url, store, redis, _prefix: guard, _db: db }
    }

    fn config(&self, worker_id: &str) -> Config {
        let mut cfg = Config::new(redis_url(), self.db_url.clone());
        cfg.key_prefix = self.prefix.clone();
        cfg.shards = SHARDS;
        cfg.worker_id = worker_id.into();
        cfg.block = Duration::from_millis(100);
        cfg.claim_idle = Duration::from_millis(200);
        cfg
    }

    async fn worker(&self, worker_id: &str) -> Worker {
        Worker::with_store(self.config(worker_id), self.store.clone()).await.expect("worker")
    }

    fn shard_key(&self, conv: &str) -> String {
        self.keys.log(shard_of(conv, SHARDS))
    }

    async fn xadd_bytes(&mut self, stream: &str, field: &str, bytes: &[u8]) -> String {
        redis::cmd("XADD").arg(stream).arg("*").arg(field).arg(bytes).query_async(&mut self.redis).await.expect("xadd")
    }

    async fn xadd(&mut self, ev: &LogEvent) -> String {
        let key = self.shard_key(ev.conversation());
        self.xadd_bytes(&key, FIELD, &envelope::encode(ev)).await
    }

    async fn row(&mut self, conv: &str) -> HashMap<String, String> {
        self.redis.hgetall(self.keys.row(conv)).await.expect("hgetall")
    }

    async fn zscore(&mut self, key: String, member: &str) -> Option<f64> {
        self.redis.zscore(key, member).await.expect("zscore")
    }

    async fn pending(&mut self) -> u64 {
        let mut total = 0;
        for s in 0..SHARDS {
            let v: redis::Value =
                redis::cmd("XPENDING").arg(self.keys.log(s)).arg(WORKER_GROUP).query_async(&mut self.redis).await.expect("xpending");
            if let redis::Value::Array(items) = v {
                if let Some(redis::Value::Int(n)) = items.first() {
                    total += *n as u64;
                }
            }
        }
        total
    }

    async fn log_len(&mut self) -> u64 {
        let mut total = 0;
        for s in 0..SHARDS {
            let n: u64 = self.redis.xlen(self.keys.log(s)).await.expect("xlen");
            total += n;
        }
        total
    }

    async fn staff_events(&mut self) -> Vec<ConversationRow> {
        let reply: redis::streams::StreamRangeReply = self.redis.xrange_all(self.keys.staff_events()).await.expect("xrange");
        reply
            .ids
            .iter()
            .filter_map(|id| match id.map.get(FIELD) {
                Some(redis::Value::BulkString(b)) => Some(b.clone()),
                _ => None,
            })
            .map(|b| {
                let relay: Relay = envelope::decode(&b).expect("relay decodes");
                assert_eq!(relay.audience, envelope::Audience::Staff);
                match serde_json::from_str::<ServerFrame>(&relay.frame).expect("frame json") {
                    ServerFrame::Conversation(row) => {
                        assert_eq!(relay.conversation.as_deref(), Some(row.id.as_str()));
                        row
                    }
                    other => panic!("unexpected frame {other:?}"),
                }
            })
            .collect()
    }
}

/// Drains everything readable now: steps until a step reads nothing.
async fn drain(w: &mut Worker) -> StepReport {
    let mut total = StepReport::default();
    loop {
        let r = w.process_once().await.expect("step");
        if r.entries == 0 {
            return total;
        }
        total.entries += r.entries;
        total.events += r.events;
        total.inserted += r.inserted;
        total.poison += r.poison;
        total.dead_letters += r.dead_letters;
        total.rows += r.rows;
        total.relayed += r.relayed;
    }
}

// ---------------------------------------------------------------- events

fn cust(conv: &str) -> UserRef {
    UserRef { kind: UserKind::Customer, id: conv.into(), username: format!("User_{conv}") }
}

fn message(conv: &str, seq: u64, kind: MessageKind, text: &str) -> LogEvent {
    LogEvent::Message {
        conversation: conv.into(),
        customer: CustomerRef { id: conv.into(), username: format!("User_{conv}"), avatar_url: None },
        seq,
        ts: 1_700_000_000_000 + seq as i64,
        kind,
        author: match kind {
            MessageKind::Customer => Some(cust(conv)),
            MessageKind::Staff => Some(UserRef { kind: UserKind::Agent, id: "a-1".into(), username: "alice".into() }),
            _ => None,
        },
        text: text.into(),
        reply_to: None,
        client_id: None,
        order_json: None,
        attachments: Vec::new(),
    }
}

fn cmsg(conv: &str, seq: u64) -> LogEvent {
    message(conv, seq, MessageKind::Customer, &format!("hello {seq}"))
}

fn staff_read(conv: &str, seen: u64) -> LogEvent {
    LogEvent::Read { conversation: conv.into(), side: Side::Staff, delivered: seen, seen, ts: 1 }
}

// ---------------------------------------------------------------- tests

async fn main_flow(pg: bool) {
    let mut h = Harness::new(pg).await;
    let mut w = h.worker("w-main").await;

    for ev in [
        cmsg("alpha", 1),
        cmsg("alpha", 2),
        message("alpha", 3, MessageKind::Staff, "we are on it"),
        cmsg("bravo", 1),
        staff_read("bravo", 1),
    ] {
        h.xadd(&ev).await;
    }
    let r = drain(&mut w).await;
    assert_eq!((r.entries, r.events, r.inserted, r.poison), (5, 5, 4, 0));

    // SQL
    assert_eq!(h.store.message_count("alpha").await.expect("count"), 3);
    let a: ConversationState = h.store.conversation_state("alpha").await.expect("state").expect("exists");
    assert_eq!((a.unread, a.last_pos, a.preview.as_str()), (2, 3, "we are on it"));
    let b = h.store.conversation_state("bravo").await.expect("state").expect("exists");
    assert_eq!(b.unread, 0);

    // Redis row
    let row = h.row("alpha").await;
    assert_eq!(row.get("customer_id").map(String::as_str), Some("alpha"));
    assert_eq!(row.get("username").map(String::as_str), Some("User_alpha"));
    assert_eq!(row.get("avatar_url").map(String::as_str), Some(""));
    assert_eq!(row.get("preview").map(String::as_str), Some("we are on it"));
    assert_eq!(row.get("last_ts").map(String::as_str), Some(a.last_ts.to_string().as_str()));
    assert_eq!(row.get("last_seq").map(String::as_str), Some("3"));
    assert_eq!(row.get("unread").map(String::as_str), Some("2"));

    // Indexes
    assert_eq!(h.zscore(h.keys.chats_all(), "alpha").await, Some(a.last_ts as f64));
    assert_eq!(h.zscore(h.keys.chats_all(), "bravo").await, Some(b.last_ts as f64));
    assert_eq!(h.zscore(h.keys.chats_unread(), "alpha").await, Some(a.last_ts as f64));
    assert_eq!(h.zscore(h.keys.chats_unread(), "bravo").await, None, "bravo was read");
    assert_eq!(h.zscore(h.keys.chats_names(), "user_alpha\0alpha").await, Some(0.0));
    let found: Vec<String> = redis::cmd("ZRANGEBYLEX")
        .arg(h.keys.chats_names())
        .arg("[user_b")
        .arg(b"[user_b\xff".as_slice())
        .query_async(&mut h.redis)
        .await
        .expect("zrangebylex");
    assert_eq!(found, vec!["user_bravo\0bravo".to_string()]);

    // Relay: the authoritative rows went to the staff stream.
    let rows = h.staff_events().await;
    let last_alpha = rows.iter().rev().find(|r| r.id == "alpha").expect("alpha relayed");
    assert_eq!((last_alpha.unread, last_alpha.last_seq, last_alpha.preview.as_str()), (2, 3, "we are on it"));
    assert_eq!(last_alpha.customer.username, "User_alpha");
    assert!(rows.iter().any(|r| r.id == "bravo"));

    // Acked and deleted.
    assert_eq!(h.pending().await, 0);
    assert_eq!(h.log_len().await, 0);

    // The customer reading the staff reply changes nothing agents see in the
    // list: no new row is relayed to every agent.
    let relayed = h.staff_events().await.len();
    h.xadd(&LogEvent::Read { conversation: "alpha".into(), side: Side::Customer, delivered: 3, seen: 3, ts: 1 }).await;
    let r = drain(&mut w).await;
    assert_eq!(r.events, 1);
    assert_eq!(h.staff_events().await.len(), relayed, "a customer's receipt relayed a row");
    assert_eq!(h.row("alpha").await.get("unread").map(String::as_str), Some("2"));

    // Staff reads everything: unread drops out of the index, and the row goes out.
    h.xadd(&staff_read("alpha", 3)).await;
    drain(&mut w).await;
    assert_eq!(h.row("alpha").await.get("unread").map(String::as_str), Some("0"));
    assert_eq!(h.zscore(h.keys.chats_unread(), "alpha").await, None);
    let rows = h.staff_events().await;
    assert_eq!(rows.len(), relayed + 1);
    assert_eq!(rows.last().map(|r| (r.id.as_str(), r.unread)), Some(("alpha", 0)));

    // A username change moves the name index entry.
    let mut renamed = cmsg("alpha", 4);
    if let LogEvent::Message { customer, .. } = &mut renamed {
        customer.username = "Zed".into();
    }
    h.xadd(&renamed).await;
    drain(&mut w).await;
    assert_eq!(h.zscore(h.keys.chats_names(), "zed\0alpha").await, Some(0.0));
    assert_eq!(h.zscore(h.keys.chats_names(), "user_alpha\0alpha").await, None);
}

#[tokio::test]
async fn main_flow_sqlite() {
    main_flow(false).await;
}

#[tokio::test]
async fn main_flow_postgres() {
    main_flow(true).await;
}

#[tokio::test]
async fn reclaims_entries_of_a_dead_consumer_once() {
    let mut h = Harness::new(false).await;
    let mut w = h.worker("w-live").await;
    for s in 1..=3 {
        h.xadd(&cmsg("gamma", s)).await;
    }
    // A consumer reads the entries and dies before acking them.
    let streams: Vec<String> = (0..SHARDS).map(|s| h.keys.log(s)).collect();
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP").arg(WORKER_GROUP).arg("w-dead").arg("COUNT").arg(100).arg("STREAMS").arg(&streams);
    for _ in &streams {
        cmd.arg(">");
    }
    let _: redis::Value = cmd.query_async(&mut h.redis).await.expect("dead read");
    assert_eq!(h.pending().await, 3);

    // Not idle long enough yet: nothing is claimed, and new reads see nothing.
    assert_eq!(w.claim_once().await.expect("claim").entries, 0);
    assert_eq!(w.process_once().await.expect("step").entries, 0);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = w.claim_once().await.expect("claim");
    assert_eq!((r.entries, r.events, r.inserted), (3, 3, 3));
    assert_eq!(h.pending().await, 0);
    assert_eq!(h.log_len().await, 0);
    assert_eq!(h.store.message_count("gamma").await.expect("count"), 3);
    assert_eq!(h.row("gamma").await.get("unread").map(String::as_str), Some("3"));

    // Nothing left to claim or read.
    assert_eq!(w.claim_once().await.expect("claim").entries, 0);
    assert_eq!(w.process_once().await.expect("step").entries, 0);
    assert_eq!(w.refresh_pending_gauge().await.expect("gauge"), 0);
}

/// Entries of the dead-letter stream: (stream, id, reason, raw bytes).
async fn dead_letters(h: &mut Harness) -> Vec<(String, String, String, Vec<u8>)> {
    let reply: redis::streams::StreamRangeReply = h.redis.xrange_all(h.keys.dead_letters()).await.expect("xrange");
    let text = |m: &HashMap<String, redis::Value>, k: &str| match m.get(k) {
        Some(redis::Value::BulkString(b)) => b.clone(),
        _ => Vec::new(),
    };
    reply
        .ids
        .iter()
        .map(|e| {
            let s = |k| String::from_utf8(text(&e.map, k)).expect("utf8");
            (s("stream"), s("id"), s("reason"), text(&e.map, FIELD))
        })
        .collect()
}

/// `worker_dead_letters_total{reason}` as rendered now (the recorder is
/// process-wide: other tests add to it, so callers compare before and after).
fn dead_letter_metric(reason: &str) -> u64 {
    let text = worker::metrics::handle().expect("recorder").render();
    let needle = format!("worker_dead_letters_total{{reason=\"{reason}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&needle)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Garbage and an envelope version from the future are kept with their
/// reason, and the good entries around them are processed. (That a reader
/// also reads the version before its own is tested in `schema::envelope`:
/// today there is no version before 1.)
#[tokio::test]
async fn poison_entries_go_to_the_dead_letter_stream() {
    worker::metrics::handle();
    let (decode_before, version_before) = (dead_letter_metric("decode"), dead_letter_metric("version"));
    let mut h = Harness::new(false).await;
    let mut w = h.worker("w-poison").await;
    let key = h.shard_key("delta");
    h.xadd(&cmsg("delta", 1)).await;
    let garbage = h.xadd_bytes(&key, FIELD, b"\x01garbage that is not bincode").await;
    // What a writer one envelope version ahead writes: never acked away.
    let mut future = envelope::encode(&cmsg("delta", 9));
    future[0] = envelope::ENVELOPE_VERSION + 1;
    let ahead = h.xadd_bytes(&key, FIELD, &future).await;
    let no_field = h.xadd_bytes(&key, "other", b"no e field").await;
    h.xadd(&cmsg("delta", 2)).await;
    let r = drain(&mut w).await;
    assert_eq!((r.entries, r.events, r.poison, r.dead_letters, r.inserted), (5, 2, 3, 3, 2));
    assert_eq!(h.pending().await, 0, "poison is acked so it cannot block the group");
    assert_eq!(h.log_len().await, 0);
    assert_eq!(h.store.message_count("delta").await.expect("count"), 2);

    let dl = dead_letters(&mut h).await;
    assert_eq!(
        dl,
        vec![
            (key.clone(), garbage, "decode".into(), b"\x01garbage that is not bincode".to_vec()),
            (key.clone(), ahead, "version".into(), future),
            (key.clone(), no_field, "decode".into(), Vec::new()),
        ]
    );
    assert!(dead_letter_metric("decode") >= decode_before + 2);
    assert!(dead_letter_metric("version") > version_before);
}

/// The loyalty stream shares the consumer loop, so its poison goes the same way.
#[tokio::test]
async fn loyalty_requests_that_do_not_decode_are_dead_lettered() {
    let mut h = Harness::new(false).await;
    let cfg = h.config("w-loyalty");
    let loyalty = worker::loyalty::open_loyalty(&cfg, &h.store).expect("loyalty");
    let mut lw = worker::loyalty::LoyaltyWorker::new(&cfg, loyalty).await.expect("loyalty worker");
    let id = h.xadd_bytes(&h.keys.loyalty(), FIELD, b"\x01not a request").await;
    let r = lw.process_once().await.expect("step");
    assert_eq!((r.entries, r.poison, r.executed), (1, 1, 0));
    let dl = dead_letters(&mut h).await;
    assert_eq!(dl, vec![(h.keys.loyalty(), id, "decode".into(), b"\x01not a request".to_vec())]);
    let left: u64 = h.redis.xlen(h.keys.loyalty()).await.expect("xlen");
    assert_eq!(left, 0);
}

async fn a_reused_position_is_dead_lettered(pg: bool) {
    worker::metrics::handle();
    let before = dead_letter_metric("seq_conflict");
    let mut h = Harness::new(pg).await;
    let mut w = h.worker("w-conflict").await;
    h.xadd(&cmsg("mike", 1)).await;
    h.xadd(&message("mike", 2, MessageKind::Customer, "the first 2")).await;
    drain(&mut w).await;
    // Redis failed over and lost the last increment: another message gets 2.
    let mut other = message("mike", 2, MessageKind::Customer, "a different 2");
    if let LogEvent::Message { ts, client_id, .. } = &mut other {
        *ts += 5_000;
        *client_id = Some("c-other".into());
    }
    let id = h.xadd(&other).await;
    // The promoted replica's counter (behind what the record will hold).
    let _: () = h.redis.hset(h.keys.state("mike"), "n", 1).await.expect("hset");
    // The same message delivered again is a duplicate, not a conflict.
    h.xadd(&message("mike", 2, MessageKind::Customer, "the first 2")).await;
    h.xadd(&cmsg("mike", 3)).await;
    let r = drain(&mut w).await;
    assert_eq!((r.entries, r.events, r.inserted, r.poison, r.dead_letters), (3, 2, 1, 0, 1));
    let page = h.store.messages_page("mike", None, 10).await.expect("page").0;
    assert_eq!(page.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["hello 1", "the first 2", "hello 3"]);
    let dl = dead_letters(&mut h).await;
    assert_eq!(dl.len(), 1);
    assert_eq!((&dl[0].0, &dl[0].1, dl[0].2.as_str()), (&h.shard_key("mike"), &id, "seq_conflict"));
    assert_eq!(envelope::decode::<LogEvent>(&dl[0].3).expect("raw bytes kept"), other);
    assert_eq!(h.pending().await, 0);
    assert!(dead_letter_metric("seq_conflict") > before);
    // The counter was raised past the record's last position (issue 20, #13):
    // the next send gets a fresh position instead of colliding again.
    let n: u64 = h.redis.hget(h.keys.state("mike"), "n").await.expect("hget");
    assert_eq!(n, 3);
}

#[tokio::test]
async fn a_reused_position_is_dead_lettered_sqlite() {
    a_reused_position_is_dead_lettered(false).await;
}

#[tokio::test]
async fn a_reused_position_is_dead_lettered_postgres() {
    a_reused_position_is_dead_lettered(true).await;
}

#[tokio::test]
async fn an_event_the_database_refuses_is_isolated_and_dead_lettered() {
    let mut h = Harness::new(false).await;
    // Stand-in for any value the database rejects (a constraint violation).
    let mut raw = sqlx::SqliteConnection::connect(&h.db_url).await.expect("raw sqlite");
    raw.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON messages WHEN NEW.text = 'refuse me'
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .await
    .expect("trigger");
    let mut w = h.worker("w-refuse").await;
    h.xadd(&cmsg("lima", 1)).await;
    let refused = h.xadd(&message("lima", 2, MessageKind::Customer, "refuse me")).await;
    h.xadd(&cmsg("lima", 3)).await;
    let r = drain(&mut w).await;
    assert_eq!((r.entries, r.events, r.poison, r.dead_letters, r.inserted), (3, 2, 1, 1, 2));
    assert_eq!(h.pending().await, 0);
    assert_eq!(h.store.message_count("lima").await.expect("count"), 2);
    let dl = dead_letters(&mut h).await;
    assert_eq!(dl.len(), 1);
    assert_eq!((dl[0].1.as_str(), dl[0].2.as_str()), (refused.as_str(), "refused"));
    assert_eq!(h.row("lima").await.get("last_seq").map(String::as_str), Some("3"));
}

#[tokio::test]
async fn duplicated_events_do_not_double_count_unread() {
    let mut h = Harness::new(false).await;
    let mut w = h.worker("w-dup").await;
    // The same message twice in one batch, then again in a later batch.
    h.xadd(&cmsg("echo", 1)).await;
    h.xadd(&cmsg("echo", 1)).await;
    h.xadd(&cmsg("echo", 2)).await;
    let r = drain(&mut w).await;
    assert_eq!((r.events, r.inserted), (3, 2));
    h.xadd(&cmsg("echo", 1)).await;
    let r = drain(&mut w).await;
    assert_eq!((r.events, r.inserted), (1, 0));
    assert_eq!(h.store.conversation_state("echo").await.expect("state").expect("exists").unread, 2);
    assert_eq!(h.row("echo").await.get("unread").map(String::as_str), Some("2"));
    assert_eq!(h.store.message_count("echo").await.expect("count"), 2);
}

#[tokio::test]
async fn an_older_state_never_overwrites_a_newer_row() {
    let mut h = Harness::new(false).await;
    let list = ChatList::new(h.keys.clone());
    let state = |last_pos: u64, staff_seen: u64, unread: u64| ConversationState {
        id: "fox".into(),
        customer: CustomerRef { id: "fox".into(), username: "Fox".into(), avatar_url: Some("https://a/f.png".into()) },
        preview: format!("at {last_pos}"),
        last_ts: 10 + last_pos as i64,
        last_pos,
        unread,
        staff_delivered: 0,
        staff_seen,
        customer_delivered: 0,
        customer_seen: 0,
    };
    let applied = list.write_rows(&mut h.redis, &[state(5, 0, 3)]).await.expect("write");
    assert_eq!(applied.len(), 1);
    let applied = list.write_rows(&mut h.redis, &[state(3, 0, 1)]).await.expect("write");
    assert!(applied.is_empty(), "older position refused");
    let applied = list.write_rows(&mut h.redis, &[state(5, 4, 1)]).await.expect("write");
    assert_eq!(applied.len(), 1, "same position, newer receipt accepted");
    let applied = list.write_rows(&mut h.redis, &[state(5, 2, 2)]).await.expect("write");
    assert!(applied.is_empty(), "same position, older receipt refused");
    let row = h.row("fox").await;
    assert_eq!(row.get("last_seq").map(String::as_str), Some("5"));
    assert_eq!(row.get("unread").map(String::as_str), Some("1"));
    assert_eq!(row.get("preview").map(String::as_str), Some("at 5"));
    assert_eq!(row.get("avatar_url").map(String::as_str), Some("https://a/f.png"));
}

#[tokio::test]
async fn chat_list_is_rebuilt_from_sql_when_redis_lost_it() {
    let mut h = Harness::new(false).await;
    h.store.persist(&[cmsg("golf", 1), cmsg("golf", 2), cmsg("hotel", 1), staff_read("hotel", 1)]).await.expect("persist");
    // Receipts only, no message yet: stays out of the list.
    h.store.persist(&[staff_read("india", 1)]).await.expect("persist");
    // A fresh prefix has no chats:all, so starting a worker rebuilds.
    let mut w = h.worker("w-rebuild").await;
    assert_eq!(h.row("golf").await.get("unread").map(String::as_str), Some("2"));
    assert_eq!(h.row("hotel").await.get("unread").map(String::as_str), Some("0"));
    let golf = h.store.conversation_state("golf").await.expect("state").expect("exists");
    assert_eq!(h.zscore(h.keys.chats_all(), "golf").await, Some(golf.last_ts as f64));
    assert_eq!(h.zscore(h.keys.chats_unread(), "golf").await, Some(golf.last_ts as f64));
    assert_eq!(h.zscore(h.keys.chats_unread(), "hotel").await, None);
    assert!(h.zscore(h.keys.chats_all(), "hotel").await.is_some());
    assert_eq!(h.zscore(h.keys.chats_all(), "india").await, None);
    assert_eq!(h.zscore(h.keys.chats_names(), "user_golf\0golf").await, Some(0.0));

    // Called directly it rewrites the same rows (idempotent).
    let n = worker::rebuild_chat_list(&h.store, &mut h.redis, &h.keys).await.expect("rebuild");
    assert_eq!(n, 3);

    // Redis loses the list under a running worker: the next claim tick rebuilds it.
    let _: () = h.redis.del(h.keys.chats_all()).await.expect("del");
    let _: () = h.redis.del(h.keys.chats_names()).await.expect("del");
    let _: () = h.redis.del(h.keys.row("golf")).await.expect("del");
    w.claim_once().await.expect("claim");
    assert_eq!(h.zscore(h.keys.chats_all(), "golf").await, Some(golf.last_ts as f64));
    assert_eq!(h.row("golf").await.get("unread").map(String::as_str), Some("2"));
    // Rows that survived get their name entries back too.
    assert_eq!(h.zscore(h.keys.chats_names(), "user_hotel\0hotel").await, Some(0.0));
    assert_eq!(h.zscore(h.keys.chats_names(), "user_golf\0golf").await, Some(0.0));

    // A conversation that had only receipts (a row, but not listed) gets its
    // name entry with its first message, its username unchanged.
    assert_eq!(h.zscore(h.keys.chats_names(), "user_india\0india").await, None);
    let _: () = h.redis.hset(h.keys.row("india"), "username", "User_india").await.expect("hset");
    assert_eq!(h.row("india").await.get("last_ts").map(String::as_str), Some("0"));
    h.xadd(&cmsg("india", 2)).await;
    drain(&mut w).await;
    assert!(h.zscore(h.keys.chats_all(), "india").await.is_some());
    assert_eq!(h.zscore(h.keys.chats_names(), "user_india\0india").await, Some(0.0));
}

#[tokio::test]
async fn a_failed_batch_stays_pending_and_is_finished_after_restart() {
    let mut h = Harness::new(false).await;
    // A worker whose database goes away mid-run.
    let broken = Store::connect(&h.db_url).await.expect("store");
    let mut w = Worker::with_store(h.config("w-crash"), broken.clone()).await.expect("worker");
    broken.close().await;
    h.xadd(&cmsg("juliet", 1)).await;
    h.xadd(&cmsg("juliet", 2)).await;
    let mut failed = false;
    for _ in 0..5 {
        match w.process_once().await {
            Err(_) => {
                failed = true;
                break;
            }
            Ok(r) if r.entries == 0 => continue,
            Ok(r) => panic!("persisted with a closed store: {r:?}"),
        }
    }
    assert!(failed, "persist must fail");
    assert_eq!(h.pending().await, 2, "nothing acked");
    assert_eq!(h.store.message_count("juliet").await.expect("count"), 0);
    drop(w);

    // Same consumer name, database back: it re-reads its own pending entries first.
    let mut w = h.worker("w-crash").await;
    let r = w.process_once().await.expect("step");
    assert_eq!((r.entries, r.inserted), (2, 2));
    assert_eq!(h.pending().await, 0);
    assert_eq!(h.store.message_count("juliet").await.expect("count"), 2);
}

#[tokio::test]
async fn run_processes_until_shutdown_and_serves_metrics() {
    let mut h = Harness::new(false).await;
    let mut cfg = h.config("w-run");
    cfg.claim_interval = Duration::from_millis(200);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker::run(cfg, async move {
        let _ = rx.await;
    }));
    h.xadd(&cmsg("kilo", 1)).await;
    let mut ok = false;
    for _ in 0..100 {
        if h.store.message_count("kilo").await.expect("count") == 1 && !h.row("kilo").await.is_empty() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "run persisted the event");
    let _ = tx.send(());
    let res = tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops promptly").expect("join");
    res.expect("run ok");

    // The metrics endpoint (served by run when configured; here directly on port 0).
    let (addr, server) = worker::metrics::serve("127.0.0.1:0".parse().expect("addr")).await.expect("serve");
    let body = http_get(addr, "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("worker_events_total"), "{body}");
    assert!(body.contains("worker_batch_size"), "{body}");
    assert!(http_get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    server.abort();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    out
}

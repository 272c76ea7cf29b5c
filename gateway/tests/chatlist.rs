//! Chat-list rows to agent sockets (issue 17, item 6): coalesced per node,
//! the latest row of a conversation wins, at most one flush per
//! `CHAT_ROW_FLUSH_MS`; the first row after a quiet spell is not delayed.

mod common;

use std::time::{Duration, Instant};

use common::{uuid, Db, Stack};
use serde_json::{json, Value};

fn is_row(conv: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v: &Value| v["type"] == "conversation" && v["id"] == conv
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_to_agents_are_coalesced_and_the_latest_always_arrives() {
    // A long flush interval makes coalescing visible whatever the machine's speed.
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_ROW_FLUSH_MS", "1000").env("CHAT_SEND_RATE", "1000");
    s.add_worker();
    s.add_gateway();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("rowan").await;
    let mut agent = s.ws(1, &tok).await; // not watching: rows only
    let mut cust = s.ws(0, &cust_tok).await;

    // After a quiet spell the first row goes out at once, not after the interval.
    let sent = Instant::now();
    assert_eq!(cust.say(&conv, "first").await["type"], "ack");
    let row = agent.expect(is_row(&conv)).await;
    eprintln!("first row after {:?}", sent.elapsed());
    assert_eq!(row["last_seq"], 1, "{row}");

    // 40 messages over about two seconds: the worker writes a row per batch
    // (tens of rows); the agent gets at most one per flush interval.
    let started = Instant::now();
    let mut last = 0;
    for i in 0..40 {
        let cid = uuid();
        cust.send(json!({"type":"send","rid":cid,"conversation":conv,"client_id":cid,"text":format!("m{i}")})).await;
        last = cust.reply(&cid).await["seq"].as_u64().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spent = started.elapsed();
    // The last row arrives (latest wins), whatever was coalesced before it.
    let mut rows = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = agent.expect(is_row(&conv)).await;
        rows += 1;
        if r["last_seq"].as_u64() == Some(last) {
            assert_eq!(r["preview"], "m39", "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "the latest row never came (last {last}, got {r})");
    }
    let whole = started.elapsed();
    // One flush per second at most, plus the one at the start and the one after the last send.
    let allowed = whole.as_secs_f64().ceil() as usize + 2;
    eprintln!("{rows} rows for 40 messages sent in {spent:?} (rows arrived within {whole:?}; at most {allowed})");
    assert!(rows <= allowed, "{rows} rows in {whole:?}: not coalesced (at most {allowed} flushes)");

    // Uncoalesced rows were counted as replaced.
    let m = s.http.get(format!("http://{}/metrics", s.gateways[1].metrics)).send().await.unwrap().text().await.unwrap();
    let coalesced: f64 = m
        .lines()
        .find(|l| l.starts_with("gateway_chatlist_rows_coalesced_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .expect("gateway_chatlist_rows_coalesced_total exported");
    assert!(coalesced > 0.0, "nothing coalesced: {coalesced}");
}

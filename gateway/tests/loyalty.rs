//! Points actions end to end: real gateways and workers, Redis, and the SQL
//! loyalty store on SQLite and PostgreSQL.

mod common;
mod panel;

use std::time::Duration;

use common::{Db, Stack};
use panel::{balance, give, ledger, ledger_sum, post, reset, system_texts, Reply};
use serde_json::{json, Value};

/// Give points twice with one key: one ledger entry, one system message, the
/// same answer; the balance reaches agents live; the key with another amount
/// is a conflict.
async fn give_is_idempotent(db: Db) {
    let s = Stack::start(2, 1, db).await;
    let agent_tok = s.agent_token().await;
    let (_cust_tok, conv) = s.customer("pat").await;
    let mut agent_a = s.ws(0, &agent_tok).await;
    // A has the conversation open (gets its messages); B only the points.
    agent_a.watch(&conv, 0).await;
    let mut agent_b = s.ws(1, &agent_tok).await;

    let key = uuid::Uuid::new_v4().to_string();
    let r1 = give(&s, 0, &agent_tok, &conv, &key, json!({"amount": 50})).await;
    assert_eq!(r1.status, 200, "{:?}", r1.body);
    assert!(!r1.replayed);
    assert_eq!(r1.body["balance"], 50);
    assert_eq!(r1.body["transaction"]["kind"], "awarded");
    assert_eq!(r1.body["transaction"]["amount"], 50);
    assert_eq!(r1.body["transaction"]["by"]["username"], "demo");
    // Every agent viewing the customer, on any node, sees the new balance.
    for a in [&mut agent_a, &mut agent_b] {
        let p = a.expect(|f| f["type"] == "points").await;
        assert_eq!(p["customer"], conv.as_str());
        assert_eq!(p["balance"], 50);
        assert_eq!(p["version"], 1);
    }
    let m = agent_a.expect(|f| f["type"] == "message" && f["message"]["kind"] == "system").await;
    assert_eq!(m["message"]["text"], "50 points awarded by Demo Agent");

    // Same key again (from the other node): same result, nothing new.
    let r2 = give(&s, 1, &agent_tok, &conv, &key, json!({"amount": 50})).await;
    assert_eq!(r2.status, 200);
    assert!(r2.replayed);
    assert_eq!(r2.body, r1.body);
    // Same key, another amount: refused.
    let r3 = give(&s, 0, &agent_tok, &conv, &key, json!({"amount": 60})).await;
    assert_eq!(r3.status, 409, "{:?}", r3.body);
    assert_eq!(r3.body["error"]["code"], "conflict");

    let entries = ledger(&s, &agent_tok, &conv).await;
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(balance(&s, &agent_tok, &conv).await, 50);
    let sys = system_texts(&s, &agent_tok, &conv, |t| !t.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sys2 = system_texts(&s, &agent_tok, &conv, |_| true).await;
    assert_eq!(sys, ["50 points awarded by Demo Agent"]);
    assert_eq!(sys2, sys);
    agent_a
        .expect_none(Duration::from_millis(300), |f| f["type"] == "message" && f["message"]["kind"] == "system")
        .await;

    // With a reason, the message says why.
    let r = give(&s, 0, &agent_tok, &conv, "k-reason", json!({"amount": 5, "reason": "late order"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["transaction"]["reason"], "late order");
    system_texts(&s, &agent_tok, &conv, |t| t.iter().any(|x| x == "5 points awarded by Demo Agent: late order")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn give_is_idempotent_sqlite() {
    give_is_idempotent(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn give_is_idempotent_postgres() {
    give_is_idempotent(Db::Postgres).await;
}

/// 100 concurrent awards of 10 from two agents through two gateways and two
/// workers: exactly +1000, and the balance equals the ledger's sum.
async fn concurrent_awards(db: Db) {
    let mut s = Stack::new(db).await;
    s.add_worker();
    s.add_worker();
    s.add_gateway();
    s.add_gateway();
    s.wait_ready().await;
    let store = store::Store::connect(&s.db_url).await.expect("store");
    store.ensure_agent("bea", "Bea", "pw-bea").await.expect("agent");
    store.close().await;
    let tok_a = s.agent_token().await;
    let r: Value = s
        .http
        .post(format!("{}/api/login", s.url(1)))
        .json(&json!({"username": "bea", "password": "pw-bea"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tok_b = r["token"].as_str().expect("token").to_string();
    let (_, conv) = s.customer("quinn").await;
    let start = give(&s, 0, &tok_a, &conv, "before", json!({"amount": 7})).await;
    assert_eq!(start.body["balance"], 7);

    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..100 {
        let s = s.clone();
        let (tok, g) = if i % 2 == 0 { (tok_a.clone(), 0) } else { (tok_b.clone(), 1) };
        let conv = conv.clone();
        tasks.push(tokio::spawn(async move {
            give(&s, g, &tok, &conv, &format!("burst-{i}"), json!({"amount": 10})).await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        let r: Reply = t.await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        versions.push(r.body["version"].as_u64().unwrap());
    }
    versions.sort();
    assert_eq!(versions, (2..=101).collect::<Vec<u64>>(), "every award its own ledger entry");
    let entries = ledger(&s, &tok_a, &conv).await;
    assert_eq!(entries.len(), 101);
    assert_eq!(ledger_sum(&entries), 1007);
    assert_eq!(balance(&s, &tok_a, &conv).await, 1007);
    // Both agents are named in the messages.
    let sys = system_texts(&s, &tok_a, &conv, |t| t.len() == 101).await;
    assert_eq!(sys.iter().filter(|t| t.as_str() == "10 points awarded by Bea").count(), 50);
    assert_eq!(sys.iter().filter(|t| t.as_str() == "10 points awarded by Demo Agent").count(), 50);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_awards_sqlite() {
    concurrent_awards(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_awards_postgres() {
    concurrent_awards(Db::Postgres).await;
}

/// Reset: a correcting entry of minus the balance; a reset of zero is a
/// clear no-op (no entry, no message).
async fn reset_balance(db: Db) {
    let s = Stack::start(1, 1, db).await;
    let tok = s.agent_token().await;
    let (_, conv) = s.customer("rae").await;
    let mut agent = s.ws(0, &tok).await;
    agent.watch(&conv, 0).await;
    assert_eq!(give(&s, 0, &tok, &conv, "g1", json!({"amount": 30})).await.status, 200);
    assert_eq!(give(&s, 0, &tok, &conv, "g2", json!({"amount": 12})).await.status, 200);
    let r = reset(&s, 0, &tok, &conv, "r1").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["balance"], 0);
    assert_eq!(r.body["noop"], false);
    assert_eq!(r.body["transaction"]["kind"], "reset");
    assert_eq!(r.body["transaction"]["amount"], -42);
    assert_eq!(r.body["transaction"]["balance_after"], 0);
    agent.expect(|f| f["type"] == "points" && f["balance"] == 0).await;
    // The same reset again: the same answer.
    let again = reset(&s, 0, &tok, &conv, "r1").await;
    assert!(again.replayed);
    assert_eq!(again.body, r.body);
    // A late repeat of the first award answers its original outcome, but the
    // balance relayed live is the current one.
    let late = give(&s, 0, &tok, &conv, "g1", json!({"amount": 30})).await;
    assert!(late.replayed);
    assert_eq!(late.body["balance"], 30);
    let p = agent.expect(|f| f["type"] == "points" && f["version"] == 3).await;
    assert_eq!(p["balance"], 0);
    // A new reset of a zero balance: no-op.
    let n = reset(&s, 0, &tok, &conv, "r2").await;
    assert_eq!(n.status, 200);
    assert_eq!(n.body["noop"], true);
    assert_eq!(n.body["balance"], 0);
    assert!(n.body["transaction"].is_null());
    assert!(n.body["message"].as_str().unwrap().contains("already 0"));

    let entries = ledger(&s, &tok, &conv).await;
    assert_eq!(entries.len(), 3);
    assert_eq!(ledger_sum(&entries), 0);
    assert_eq!(entries[0]["kind"], "reset");
    let want = [
        "30 points awarded by Demo Agent",
        "12 points awarded by Demo Agent",
        "Points balance reset to 0 by Demo Agent (42 points removed)",
    ];
    let sys = system_texts(&s, &tok, &conv, |t| t.len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sys, want);
    assert_eq!(system_texts(&s, &tok, &conv, |_| true).await, want);
    assert_eq!(balance(&s, &tok, &conv).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_balance_sqlite() {
    reset_balance(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_balance_postgres() {
    reset_balance(Db::Postgres).await;
}

/// Negative, zero, huge or non-numeric amounts, a missing key: clear errors
/// and no ledger change. The maximum is configurable.
#[tokio::test(flavor = "multi_thread")]
async fn bad_amounts_change_nothing() {
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_MAX_POINTS", "500");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let (_, conv) = s.customer("sam").await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"amount": -5}), "positive"),
        (json!({"amount": 0}), "positive"),
        (json!({"amount": 501}), "at most 500"),
        (json!({"amount": 1_000_000_000_000i64}), "at most 500"),
        (json!({"amount": 18_446_744_073_709_551_615u64}), "at most 500"),
        (json!({"amount": "abc"}), "number"),
        (json!({"amount": "10"}), "number"),
        (json!({"amount": 2.5}), "whole"),
        (json!({"amount": null}), "required"),
        (json!({"reason": "no amount"}), "required"),
        (json!({"amount": 5, "reason": "x".repeat(201)}), "reason"),
        (json!([5]), "object"),
    ];
    for (i, (body, says)) in cases.iter().enumerate() {
        let r = give(&s, 0, &tok, &conv, &format!("bad-{i}"), body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "invalid");
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.contains(says), "{body}: {msg}");
    }
    // Not JSON at all.
    let r = s
        .http
        .post(format!("{}/api/customers/{conv}/points", s.url(0)))
        .bearer_auth(&tok)
        .header("Idempotency-Key", "raw")
        .body("amount=5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // The key is required, on both actions.
    let r = post(&s, 0, &format!("/api/customers/{conv}/points"), Some(&tok), None, Some(json!({"amount": 5}))).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("Idempotency-Key"));
    let r = post(&s, 0, &format!("/api/customers/{conv}/points/reset"), Some(&tok), None, None).await;
    assert_eq!(r.status, 400);
    let r = give(&s, 0, &tok, &conv, &"k".repeat(129), json!({"amount": 5})).await;
    assert_eq!(r.status, 400);

    assert!(ledger(&s, &tok, &conv).await.is_empty());
    assert_eq!(balance(&s, &tok, &conv).await, 0);
    // A refused key is not used up; the maximum itself is fine.
    let ok = give(&s, 0, &tok, &conv, "bad-0", json!({"amount": 500})).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ledger(&s, &tok, &conv).await.len(), 1);
}

/// Who may act: agents only (a customer token gets 403 even on its own id),
/// on customers that exist (404).
#[tokio::test(flavor = "multi_thread")]
async fn who_may_act() {
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("tia").await;
    let (_, other) = s.customer("uma").await;

    for target in [&conv, &other] {
        let r = give(&s, 0, &cust_tok, target, "c1", json!({"amount": 5})).await;
        assert_eq!(r.status, 403, "{:?}", r.body);
        assert_eq!(r.body["error"]["code"], "forbidden");
        let r = reset(&s, 0, &cust_tok, target, "c2").await;
        assert_eq!(r.status, 403);
    }
    let r = post(&s, 0, &format!("/api/customers/{conv}/points"), None, Some("c3"), Some(json!({"amount": 5}))).await;
    assert_eq!(r.status, 401);

    let r = give(&s, 0, &tok, "nobody-here", "n1", json!({"amount": 5})).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "not_found");
    assert_eq!(reset(&s, 0, &tok, "nobody-here", "n2").await.status, 404);
    for p in ["", "/vouchers", "/orders?state=active", "/transactions"] {
        let (st, v) = s.get(0, &format!("/api/customers/nobody-here{p}"), &tok).await;
        assert_eq!(st, 404, "{p}: {v}");
    }
    // The customer reads its own panel, not another's.
    let (st, _) = s.get(0, &format!("/api/customers/{conv}/transactions"), &cust_tok).await;
    assert_eq!(st, 200);
    let (st, _) = s.get(0, &format!("/api/customers/{other}/vouchers"), &cust_tok).await;
    assert_eq!(st, 403);
    let (st, v) = s.get(0, &format!("/api/customers/{conv}/orders?state=later"), &tok).await;
    assert_eq!(st, 400, "{v}");
    assert!(ledger(&s, &tok, &conv).await.is_empty());
    assert!(ledger(&s, &tok, &other).await.is_empty());
}

/// Transactions page newest first with a cursor; the customer profile shows
/// the real balance.
#[tokio::test(flavor = "multi_thread")]
async fn transactions_pages() {
    let s = Stack::start(1, 1, Db::Postgres).await;
    let tok = s.agent_token().await;
    let (_, conv) = s.customer("val").await;
    for i in 1..=25 {
        let r = give(&s, 0, &tok, &conv, &format!("p{i}"), json!({"amount": i})).await;
        assert_eq!(r.status, 200);
    }
    let (st, p1) = s.get(0, &format!("/api/customers/{conv}/transactions"), &tok).await;
    assert_eq!(st, 200);
    let items = p1["items"].as_array().unwrap();
    assert_eq!(items.len(), 20);
    assert_eq!(items[0]["amount"], 25);
    assert_eq!(items[0]["balance_after"], 325);
    let cursor = p1["next_cursor"].as_str().expect("more pages");
    let (_, p2) = s.get(0, &format!("/api/customers/{conv}/transactions?cursor={cursor}"), &tok).await;
    let items2 = p2["items"].as_array().unwrap();
    assert_eq!(items2.len(), 5);
    assert_eq!(items2[4]["amount"], 1);
    assert!(p2["next_cursor"].is_null());
    let (_, c) = s.get(0, &format!("/api/customers/{conv}"), &tok).await;
    assert_eq!(c["points"], 325);
    assert_eq!(c["points_version"], 25);
    let (st, v) = s.get(0, &format!("/api/customers/{conv}/transactions?cursor=abc"), &tok).await;
    assert_eq!(st, 400, "{v}");
}

/// Without a worker no one executes the action: 503 after the wait, no
/// message, no entry; a retry with the same key once a worker runs succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn no_worker_is_unavailable() {
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_POINTS_WAIT_MS", "1500");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let (_, conv) = s.customer("wes").await;
    s.workers[0].kill9();
    let r = give(&s, 0, &tok, &conv, "late", json!({"amount": 9})).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "unavailable");
    s.add_worker();
    // The request that timed out is dropped unexecuted by the new worker
    // (past its deadline); the retry runs.
    let r = give(&s, 0, &tok, &conv, "late", json!({"amount": 9})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(!r.replayed, "the timed-out request must not have run");
    assert_eq!(ledger(&s, &tok, &conv).await.len(), 1);
    let sys = system_texts(&s, &tok, &conv, |t| !t.is_empty()).await;
    assert_eq!(sys, ["9 points awarded by Demo Agent"]);
}

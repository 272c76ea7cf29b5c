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

//! Order events end to end: the order card appears in the conversation,
//! updates in place on both sides (live, in the replay stream, persisted),
//! status changes add system messages, out-of-order and repeated events are
//! handled, and concurrent first events create one card.

mod common;
mod panel;

use std::time::Duration;

use common::{Db, Stack};
use panel::{event, full_history, order_event, post, system_texts};
use serde_json::json;

async fn card_lifecycle(db: Db) {
    let s = Stack::start(2, 1, db).await;
    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("olga").await;
    let mut agent = s.ws(0, &tok).await;
    agent.watch(&conv, 0).await;
    let mut cust = s.ws(1, &cust_tok).await;
    let t0 = schema::now_ms() - 60_000;

    // First event: the card is a message of kind `order`, on both sides.
    let r = order_event(&s, event("77", &conv, "placed", t0)).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(r.body["status"], "placed");
    let card_seq = r.body["card_seq"].as_u64().unwrap();
    for c in [&mut agent, &mut cust] {
        let m = c.expect(|f| f["type"] == "message" && f["message"]["kind"] == "order").await;
        assert_eq!(m["message"]["seq"], card_seq);
        assert_eq!(m["message"]["text"], "Order #77");
        let o = &m["message"]["order"];
        assert_eq!(o["id"], "77");
        assert_eq!(o["status"], "placed");
        assert_eq!(o["total"], 9.9);
        assert_eq!(o["items"][0]["name"], "Latte");
        assert_eq!(o["steps"][0]["state"], "current");
        assert_eq!(o["steps"].as_array().unwrap().len(), 5);
    }

    // A newer event updates that card in place, then a muted system message.
    let r = order_event(&s, event("77", &conv, "preparing", t0 + 2000)).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["card_seq"], card_seq);
    let mut update_pos = 0;
    for c in [&mut agent, &mut cust] {
        let u = c.expect(|f| f["type"] == "order").await;
        assert_eq!(u["conversation"], conv.as_str());
        assert_eq!(u["seq"], card_seq);
        assert!(u["pos"].as_u64().unwrap() > card_seq);
        update_pos = u["pos"].as_u64().unwrap();
        assert_eq!(u["order"]["status"], "preparing");
        assert_eq!(u["order"]["steps"][2]["state"], "current");
        assert_eq!(u["order"]["steps"][1]["state"], "done");
        let m = c.expect(|f| f["type"] == "message" && f["message"]["kind"] == "system").await;
        assert_eq!(m["message"]["text"], "Order #77 is now preparing");
        assert_eq!(m["message"]["seq"].as_u64().unwrap(), update_pos + 1);
    }

    // Older (out of order) and repeated events change nothing visible.
    let r = order_event(&s, event("77", &conv, "accepted", t0 + 1000)).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["status"], "preparing");
    assert_eq!(r.body["duplicate"], false);
    let r = order_event(&s, event("77", &conv, "preparing", t0 + 2000)).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["duplicate"], true);
    agent.expect_none(Duration::from_millis(500), |f| f["type"] == "order" || f["type"] == "message").await;

    // A client that resumes from before the update gets it from the replay stream.
    let mut again = s.ws(0, &cust_tok).await;
    again.send(json!({"type": "resume", "positions": {conv.clone(): card_seq}})).await;
    let u = again.expect(|f| f["type"] == "order").await;
    assert_eq!(u["pos"], update_pos);
    assert_eq!(u["order"]["status"], "preparing");
    let rp = again.expect(|f| f["type"] == "replay").await;
    assert_eq!(rp["complete"], true);

    // The panel: active orders with the full status history.
    let (st, v) = s.get(0, &format!("/api/customers/{conv}/orders?state=active"), &tok).await;
    assert_eq!(st, 200, "{v}");
    let o = &v["items"][0];
    assert_eq!(o["id"], "77");
    assert_eq!(o["status"], "preparing");
    let hist: Vec<&str> = o["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(hist, ["placed", "accepted", "preparing"]);
    assert_eq!(o["placed_at"], t0);
    assert_eq!(o["updated_at"], t0 + 2000);

    // Completed: moves to recent; the persisted card shows the last state.
    let r = order_event(&s, event("77", &conv, "completed", t0 + 9000)).await;
    assert_eq!(r.status, 202);
    cust.expect(|f| f["type"] == "order" && f["order"]["status"] == "completed").await;
    let (_, v) = s.get(0, &format!("/api/customers/{conv}/orders?state=recent"), &cust_tok).await;
    assert_eq!(v["items"][0]["id"], "77");
    let (_, v) = s.get(0, &format!("/api/customers/{conv}/orders"), &tok).await;
    assert!(v["items"].as_array().unwrap().is_empty());
    let sys = system_texts(&s, &tok, &conv, |t| t.len() == 2).await;
    assert_eq!(sys, ["Order #77 is now preparing", "Order #77 is now completed"]);
    for _ in 0..100 {
        let h = full_history(&s, &tok, &conv).await;
        let card = h.iter().find(|m| m["kind"] == "order").expect("card persisted");
        if card["order"]["status"] == "completed" {
            assert_eq!(card["seq"], card_seq);
            assert_eq!(card["text"], "Order #77");
            assert_eq!(h.iter().filter(|m| m["kind"] == "order").count(), 1);
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the persisted card never showed the last state");
}

#[tokio::test(flavor = "multi_thread")]
async fn card_lifecycle_sqlite() {
    card_lifecycle(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn card_lifecycle_postgres() {
    card_lifecycle(Db::Postgres).await;
}

/// Many events of one new order at once, through two gateways: one card,
/// showing the newest state.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_first_events_make_one_card() {
    let s = Stack::start(2, 1, Db::Postgres).await;
    let tok = s.agent_token().await;
    let (_, conv) = s.customer("pia").await;
    let t0 = schema::now_ms() - 60_000;
    let statuses = ["placed", "accepted", "preparing", "ready", "placed", "accepted", "preparing", "ready"];
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for (i, st) in statuses.iter().enumerate() {
        let s = s.clone();
        let body = event("900", &conv, st, t0 + (i as i64 % 4) * 1000);
        tasks.push(tokio::spawn(async move {
            post(&s, i % 2, "/api/orders/events", Some(panel::SERVICE_TOKEN), None, Some(body)).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 202, "{:?}", r.body);
    }
    for _ in 0..100 {
        let h = full_history(&s, &tok, &conv).await;
        let cards: Vec<_> = h.iter().filter(|m| m["kind"] == "order").collect();
        if cards.len() == 1 && cards[0]["order"]["status"] == "ready" {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let h = full_history(&s, &tok, &conv).await;
            assert_eq!(h.iter().filter(|m| m["kind"] == "order").count(), 1);
            let sys: Vec<_> = h.iter().filter(|m| m["kind"] == "system").map(|m| m["text"].as_str().unwrap()).collect();
            // Each status change is announced at most once.
            let mut dedup = sys.clone();
            dedup.dedup();
            assert_eq!(sys, dedup, "{sys:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected exactly one card showing `ready`");
}

/// The endpoint takes the service token only, and checks its input.
#[tokio::test(flavor = "multi_thread")]
async fn order_events_auth_and_validation() {
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_SERVICE_TOKEN", "s3cret-token");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("quin").await;
    let body = event("1", &conv, "placed", 1_700_000_000_000);
    for t in [None, Some("dev-service-token"), Some(tok.as_str()), Some(cust_tok.as_str())] {
        let r = post(&s, 0, "/api/orders/events", t, None, Some(body.clone())).await;
        assert_eq!(r.status, 401, "{t:?}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "unauthorized");
    }
    let ok = |b| post(&s, 0, "/api/orders/events", Some("s3cret-token"), None, Some(b));
    let r = ok(event("1", "no-such-customer", "placed", 1_700_000_000_000)).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    for (field, value) in [
        ("status", json!("shipped")),
        ("total", json!("9.90")),
        ("ts", json!(null)),
        ("items", json!({"name": "x"})),
        ("order_id", json!("has space")),
        ("customer_id", json!(7)),
    ] {
        let mut b = body.clone();
        b[field] = value;
        let r = ok(b).await;
        assert_eq!(r.status, 400, "{field}: {:?}", r.body);
        assert!(r.body["error"]["message"].as_str().unwrap().contains(field), "{field}: {:?}", r.body);
    }
    let r = ok(body.clone()).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    // An event naming another customer for an existing order is refused.
    let (_, other) = s.customer("rita").await;
    let mut b = body;
    b["customer_id"] = json!(other);
    b["status"] = json!("ready");
    assert_eq!(ok(b).await.status, 409);
    // Numeric order ids are accepted and kept as text.
    let mut b = event("x", &conv, "placed", 1_700_000_000_000);
    b["order_id"] = json!(1043);
    let r = ok(b).await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["order_id"], "1043");
}

/// Dev mode fills the panel of the demo customers.
#[tokio::test(flavor = "multi_thread")]
async fn demo_data_fills_the_panel() {
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_DEMO_DATA", "1");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let tok = s.agent_token().await;
    // The seed runs in the background after start.
    let mut ready = false;
    for _ in 0..200 {
        let (st, v) = s.get(0, "/api/customers/erin/orders?state=recent", &tok).await;
        if st == 200 && v["items"].as_array().is_some_and(|i| !i.is_empty()) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "demo orders never appeared");
    let (_, c) = s.get(0, "/api/customers/alice", &tok).await;
    assert_eq!(c["points"], 85);
    let (_, v) = s.get(0, "/api/customers/alice/vouchers", &tok).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (_, v) = s.get(0, "/api/customers/dave/vouchers", &tok).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "the expired voucher is not listed: {v}");
    let (_, v) = s.get(0, "/api/customers/alice/orders?state=active", &tok).await;
    assert_eq!(v["items"][0]["id"], "1042");
    assert_eq!(v["items"][0]["status"], "preparing");
    let (_, v) = s.get(0, "/api/customers/alice/orders?state=recent", &tok).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
    let (_, v) = s.get(0, "/api/customers/alice/transactions", &tok).await;
    let kinds: Vec<&str> = v["items"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["awarded", "spent", "earned", "earned"]);
    let h = s
        .history_until("alice", &tok, |h| h.iter().any(|m| m["kind"] == "order" && m["order"]["status"] == "preparing"))
        .await;
    assert!(h.iter().any(|m| m["kind"] == "system" && m["text"] == "Order #1042 is now preparing"));
}

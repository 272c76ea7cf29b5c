//! The SQL loyalty store on SQLite and PostgreSQL: idempotent points actions,
//! concurrency, resets, paging, vouchers, order events and order cards.

mod common;

use std::sync::Arc;

use schema::envelope::LogEvent;
use schema::frames::{CustomerRef, MessageKind};
use schema::loyalty::{
    Actor, LedgerKind, OrderEvent, OrderFilter, OrderItem, OrderStatus, PointsAction, PointsCommand, Voucher,
    VoucherState,
};
use store::loyalty::{CardState, LoyaltyError, LoyaltyStore, SharedLoyalty};
use store::Store;

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                let db = crate::common::sqlite().await;
                crate::$name(&db.store).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                let db = crate::common::postgres().await;
                crate::$name(&db.store).await;
            }
        }
    )*};
}

both!(
    award_is_idempotent,
    idempotency_keys_are_per_agent,
    concurrent_awards_sum_exactly,
    reset_corrects_and_zero_reset_is_noop,
    invalid_commands_change_nothing,
    transactions_page_newest_first,
    vouchers_active_only,
    order_events_newest_wins,
    order_card_updates_persist,
);

fn agent(n: &str) -> Actor {
    Actor { id: format!("a-{n}"), username: n.into(), display_name: Some(format!("Agent {n}")) }
}

fn award(customer: &str, key: &str, amount: i64) -> PointsCommand {
    PointsCommand {
        customer: customer.into(),
        idempotency_key: key.into(),
        action: PointsAction::Award { amount, reason: Some("goodwill".into()) },
        by: Some(agent("ann")),
        ts: schema::now_ms(),
    }
}

async fn ledger_sum(l: &dyn LoyaltyStore, customer: &str) -> (i64, usize) {
    let mut sum = 0;
    let mut n = 0;
    let mut before = None;
    loop {
        let page = l.transactions(customer, before, 100).await.unwrap();
        for e in &page.items {
            sum += e.amount;
            n += 1;
        }
        if !page.has_more {
            return (sum, n);
        }
        before = page.items.last().map(|e| e.seq);
    }
}

async fn award_is_idempotent(store: &Store) {
    let l = store.loyalty();
    let first = l.apply(&award("c1", "k1", 50)).await.unwrap();
    assert_eq!(first.balance, 50);
    assert!(!first.replayed && !first.noop);
    let tx = first.transaction.clone().unwrap();
    assert_eq!((tx.kind, tx.amount, tx.balance_after, tx.seq), (LedgerKind::Awarded, 50, 50, 1));
    assert_eq!(tx.by.as_ref().unwrap().username, "ann");
    assert_eq!(tx.reason.as_deref(), Some("goodwill"));

    let again = l.apply(&award("c1", "k1", 50)).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.balance, first.balance);
    assert_eq!(again.transaction, first.transaction);
    assert_eq!(ledger_sum(&l, "c1").await, (50, 1));

    // Same key, different amount (or customer): refused, nothing written.
    assert!(matches!(l.apply(&award("c1", "k1", 60)).await, Err(LoyaltyError::Conflict(_))));
    assert!(matches!(l.apply(&award("c2", "k1", 50)).await, Err(LoyaltyError::Conflict(_))));
    assert_eq!(ledger_sum(&l, "c1").await, (50, 1));
    assert_eq!(l.balance("c2").await.unwrap().balance, 0);
    let b = l.balance("c1").await.unwrap();
    assert_eq!((b.balance, b.version), (50, 1));
}

/// Issue 20: keys are scoped per agent. Another agent's action under the
/// same key is executed (not replayed, not refused); each agent's repeat
/// still replays its own outcome.
async fn idempotency_keys_are_per_agent(store: &Store) {
    let l = store.loyalty();
    let ann = l.apply(&award("c9", "same-key", 10)).await.unwrap();
    let mut bob_cmd = award("c9", "same-key", 10);
    bob_cmd.by = Some(agent("bob"));
    let bob = l.apply(&bob_cmd).await.unwrap();
    assert!(!bob.replayed, "bob's action was answered with ann's outcome");
    assert_eq!(bob.balance, 20);
    assert_eq!(bob.transaction.as_ref().unwrap().by.as_ref().unwrap().username, "bob");
    let ann_again = l.apply(&award("c9", "same-key", 10)).await.unwrap();
    assert!(ann_again.replayed);
    assert_eq!(ann_again.transaction, ann.transaction);
    // A different request under bob's key is still refused for bob alone.
    bob_cmd.action = PointsAction::Award { amount: 11, reason: Some("goodwill".into()) };
    assert!(matches!(l.apply(&bob_cmd).await, Err(LoyaltyError::Conflict(_))));
    assert_eq!(ledger_sum(&l, "c9").await, (20, 2));
}

async fn concurrent_awards_sum_exactly(store: &Store) {
    let l: SharedLoyalty = Arc::new(store.loyalty());
    let mut tasks = Vec::new();
    for i in 0..60 {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            // Every key twice, at the same time: still one entry per key.
            let cmd = award("cc", &format!("con-{}", i % 30), 10);
            l.apply(&cmd).await.unwrap()
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        let o = t.await.unwrap();
        if !o.replayed {
            versions.push(o.version);
        }
    }
    versions.sort();
    assert_eq!(versions, (1..=30).collect::<Vec<u64>>(), "each key executed once, versions contiguous");
    let b = l.balance("cc").await.unwrap();
    assert_eq!(b.balance, 300);
    assert_eq!(ledger_sum(l.as_ref(), "cc").await, (300, 30));
}

async fn reset_corrects_and_zero_reset_is_noop(store: &Store) {
    let l = store.loyalty();
    l.apply(&award("r1", "a1", 70)).await.unwrap();
    l.apply(&PointsCommand {
        customer: "r1".into(),
        idempotency_key: "s1".into(),
        action: PointsAction::Spend { amount: 20, reason: None },
        by: None,
        ts: 1,
    })
    .await
    .unwrap();
    let reset = PointsCommand {
        customer: "r1".into(),
        idempotency_key: "reset-1".into(),
        action: PointsAction::Reset,
        by: Some(agent("bob")),
        ts: schema::now_ms(),
    };
    let o = l.apply(&reset).await.unwrap();
    assert_eq!(o.balance, 0);
    let tx = o.transaction.unwrap();
    assert_eq!((tx.kind, tx.amount, tx.balance_after), (LedgerKind::Reset, -50, 0));
    assert_eq!(ledger_sum(&l, "r1").await, (0, 3));
    // A repeat of the reset is the same result, not a second (no-op) action.
    let again = l.apply(&reset).await.unwrap();
    assert!(again.replayed && !again.noop);
    // A new reset of a zero balance: a no-op, no entry.
    let mut second = reset.clone();
    second.idempotency_key = "reset-2".into();
    let n = l.apply(&second).await.unwrap();
    assert!(n.noop);
    assert!(n.transaction.is_none());
    assert_eq!(n.balance, 0);
    assert_eq!(ledger_sum(&l, "r1").await, (0, 3));
    // Spending more than the balance is refused: the balance never goes below zero.
    let over = PointsCommand {
        customer: "r1".into(),
        idempotency_key: "s2".into(),
        action: PointsAction::Spend { amount: 1, reason: None },
        by: None,
        ts: 1,
    };
    assert!(matches!(l.apply(&over).await, Err(LoyaltyError::Invalid(_))));
    assert_eq!(ledger_sum(&l, "r1").await, (0, 3));
}

async fn invalid_commands_change_nothing(store: &Store) {
    let l = store.loyalty();
    for amount in [0, -5, schema::loyalty::POINTS_HARD_MAX + 1] {
        let r = l.apply(&award("v1", &format!("bad{amount}"), amount)).await;
        assert!(matches!(r, Err(LoyaltyError::Invalid(_))), "{amount}: {r:?}");
    }
    let r = l.apply(&award("v1", "", 5)).await;
    assert!(matches!(r, Err(LoyaltyError::Invalid(_))));
    let r = l.apply(&award("v1", "has space", 5)).await;
    assert!(matches!(r, Err(LoyaltyError::Invalid(_))));
    let mut long = award("v1", "long", 5);
    long.action = PointsAction::Award { amount: 5, reason: Some("x".repeat(201)) };
    assert!(matches!(l.apply(&long).await, Err(LoyaltyError::Invalid(_))));
    assert_eq!(ledger_sum(&l, "v1").await, (0, 0));
    // A refused key is not burnt: it can be used for a valid request.
    assert_eq!(l.apply(&award("v1", "bad0", 5)).await.unwrap().balance, 5);
}

async fn transactions_page_newest_first(store: &Store) {
    let l = store.loyalty();
    for i in 1..=7 {
        l.apply(&award("p1", &format!("p-{i}"), i)).await.unwrap();
    }
    let p1 = l.transactions("p1", None, 3).await.unwrap();
    assert_eq!(p1.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [7, 6, 5]);
    assert!(p1.has_more);
    let p2 = l.transactions("p1", Some(5), 3).await.unwrap();
    assert_eq!(p2.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 3, 2]);
    let p3 = l.transactions("p1", Some(2), 3).await.unwrap();
    assert_eq!(p3.items.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
    assert!(!p3.has_more);
    assert_eq!(p3.items[0].balance_after, 1);
    assert_eq!(p1.items[0].balance_after, 28);
    assert!(l.transactions("nobody", None, 10).await.unwrap().items.is_empty());
}

async fn vouchers_active_only(store: &Store) {
    let l = store.loyalty();
    let now = schema::now_ms();
    let v = |id: &str, exp: Option<i64>, state| Voucher {
        id: id.into(),
        title: format!("T {id}"),
        code: id.to_uppercase(),
        expires_at: exp,
        state,
    };
    l.put_voucher("vc", &v("later", Some(now + 86_400_000), VoucherState::Active)).await.unwrap();
    l.put_voucher("vc", &v("never", None, VoucherState::Active)).await.unwrap();
    l.put_voucher("vc", &v("soon", Some(now + 60_000), VoucherState::Active)).await.unwrap();
    l.put_voucher("vc", &v("past", Some(now - 1), VoucherState::Active)).await.unwrap();
    l.put_voucher("vc", &v("used", None, VoucherState::Redeemed)).await.unwrap();
    l.put_voucher("other", &v("x", None, VoucherState::Active)).await.unwrap();
    let ids: Vec<String> = l.vouchers("vc").await.unwrap().into_iter().map(|v| v.id).collect();
    assert_eq!(ids, ["soon", "later", "never"]);
    // Upsert replaces.
    l.put_voucher("vc", &v("soon", Some(now + 60_000), VoucherState::Redeemed)).await.unwrap();
    assert_eq!(l.vouchers("vc").await.unwrap().len(), 2);
}

fn ev(order: &str, status: OrderStatus, ts: i64, total: i64) -> OrderEvent {
    OrderEvent {
        order_id: order.into(),
        customer_id: "oc".into(),
        status,
        items: vec![OrderItem { name: "Latte".into(), qty: 2, price: Some(serde_json::Number::from(3)) }],
        total: serde_json::Number::from(total),
        currency: Some("EUR".into()),
        ts,
    }
}

async fn order_events_newest_wins(store: &Store) {
    let l = store.loyalty();
    let o = l.apply_order_event(&ev("o1", OrderStatus::Placed, 100, 6)).await.unwrap();
    assert!(o.created && o.current_changed && o.card_stale());
    assert_eq!(o.card.seq, 0);
    // Newer: becomes current.
    let o = l.apply_order_event(&ev("o1", OrderStatus::Preparing, 300, 7)).await.unwrap();
    assert!(!o.created && o.current_changed && !o.repeated);
    assert_eq!(o.order.status, OrderStatus::Preparing);
    assert_eq!(o.order.total, serde_json::Number::from(7));
    // Older, arriving late: joins the history, current unchanged.
    let o = l.apply_order_event(&ev("o1", OrderStatus::Accepted, 200, 99)).await.unwrap();
    assert!(!o.current_changed && !o.repeated);
    assert_eq!(o.order.status, OrderStatus::Preparing);
    assert_eq!(o.order.total, serde_json::Number::from(7));
    let hist: Vec<_> = o.order.history.iter().map(|h| h.status).collect();
    assert_eq!(hist, [OrderStatus::Placed, OrderStatus::Accepted, OrderStatus::Preparing]);
    // Repeat: no-op.
    let o = l.apply_order_event(&ev("o1", OrderStatus::Preparing, 300, 7)).await.unwrap();
    assert!(o.repeated && !o.current_changed);
    // Same ts, later stage wins whatever the arrival order.
    l.apply_order_event(&ev("o2", OrderStatus::Ready, 50, 1)).await.unwrap();
    let o = l.apply_order_event(&ev("o2", OrderStatus::Preparing, 50, 1)).await.unwrap();
    assert_eq!(o.order.status, OrderStatus::Ready);
    assert_eq!(o.order.placed_at, 50);
    // Another customer naming an existing order: refused.
    let mut other = ev("o1", OrderStatus::Completed, 400, 7);
    other.customer_id = "intruder".into();
    assert!(matches!(l.apply_order_event(&other).await, Err(LoyaltyError::Conflict(_))));

    // Card bookkeeping.
    l.mark_order_card("o1", CardState { seq: 4, status: Some(OrderStatus::Preparing), ts: 300 }).await.unwrap();
    let o = l.apply_order_event(&ev("o1", OrderStatus::Placed, 100, 6)).await.unwrap();
    assert!(o.repeated && !o.card_stale());
    let o = l.apply_order_event(&ev("o1", OrderStatus::Completed, 500, 7)).await.unwrap();
    assert!(o.card_stale());
    assert_eq!(o.card.seq, 4);

    let active: Vec<_> = l.orders("oc", OrderFilter::Active, 10).await.unwrap().into_iter().map(|o| o.id).collect();
    assert_eq!(active, ["o2"]);
    let recent: Vec<_> = l.orders("oc", OrderFilter::Recent, 10).await.unwrap().into_iter().map(|o| o.id).collect();
    assert_eq!(recent, ["o1"]);
    assert_eq!(l.order("o1").await.unwrap().unwrap().history.len(), 4);
    assert!(l.order("nope").await.unwrap().is_none());
}

async fn order_card_updates_persist(store: &Store) {
    let cust = CustomerRef { id: "k1".into(), username: "kim".into(), avatar_url: None };
    let card = |status: &str| format!(r#"{{"id":"9","status":"{status}"}}"#);
    let message = LogEvent::Message {
        conversation: "k1".into(),
        customer: cust,
        seq: 3,
        ts: 10,
        kind: MessageKind::Order,
        author: None,
        text: "Order #9".into(),
        reply_to: None,
        client_id: None,
        order_json: Some(card("placed")),
        attachments: Vec::new(),
    };
    let upd = |pos: u64, status: &str| LogEvent::OrderCard {
        conversation: "k1".into(),
        pos,
        seq: 3,
        order_json: card(status),
        ts: 20,
    };
    // The update arrives before its card, and an older update after a newer one.
    store.persist(&[upd(6, "ready")]).await.unwrap();
    store.persist(&[message.clone(), upd(5, "preparing")]).await.unwrap();
    let (page, _) = store.messages_page("k1", None, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].kind, MessageKind::Order);
    assert_eq!(page[0].order.as_ref().unwrap()["status"], "ready");
    // Replays change nothing.
    store.persist(&[message, upd(6, "ready"), upd(4, "accepted")]).await.unwrap();
    let (page, _) = store.messages_page("k1", None, 10).await.unwrap();
    assert_eq!(page[0].order.as_ref().unwrap()["status"], "ready");
    assert_eq!(page[0].text, "Order #9");
    store.persist(&[upd(7, "completed")]).await.unwrap();
    let (page, _) = store.messages_page("k1", None, 10).await.unwrap();
    assert_eq!(page[0].order.as_ref().unwrap()["status"], "completed");
    assert_eq!(store.max_pos("k1").await.unwrap(), 7);
}

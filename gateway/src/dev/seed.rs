//! Dev mode demo data: the agent `demo` / `demo` and a few customers with
//! history, posted through the real send path (so the worker persists them).
//! Client ids are derived from the content, so two gateways seeding at once,
//! or a restart, post nothing twice.
//!
//! The customer panel gets balances (a few ledger entries each), vouchers and
//! orders. Points are written straight to the loyalty store with fixed
//! idempotency keys (dev only: no worker round trip needed at start-up);
//! orders go through the real order-event path, so their cards appear in
//! the conversations.

use schema::frames::{MessageKind, UserKind, UserRef};
use schema::loyalty::{Actor, OrderEvent, OrderItem, OrderStatus, PointsAction, PointsCommand, Voucher, VoucherState};

use crate::error::GatewayError;
use crate::ids::stable_uuid;
use crate::domain::conversations::ensure_customer_profile;
use crate::domain::messages::{post_message, NewMessage};
use crate::identity::Identity;
use crate::state::AppState;

const CUSTOMERS: &[(&str, &[(bool, &str)])] = &[
    ("alice", &[(false, "Hi! I ordered a latte this morning but it never came."), (true, "Sorry about that, Alice! Let me check your order."), (false, "Thanks, it was order #1042.")]),
    ("bob", &[(false, "Do you have vegan options on the new menu?"), (true, "We do: oat milk for every drink and two vegan pastries."), (false, "Great, see you tomorrow!")]),
    ("carol", &[(false, "How many points do I need for a free coffee?")]),
    ("dave", &[(false, "My voucher code says expired, can you help?"), (true, "Of course, Dave. Which code is it?")]),
    ("erin", &[(false, "Is the shop on Main Street open on Sunday?")]),
];

pub async fn seed(state: &AppState) -> Result<(), GatewayError> {
    let agent = state.store.ensure_agent("demo", "Demo Agent", "demo").await?;
    if !state.cfg.demo_data {
        return Ok(());
    }
    let staff = UserRef { kind: UserKind::Agent, id: agent.id.clone(), username: agent.username.clone() };
    for (name, lines) in CUSTOMERS {
        let ident = Identity { kind: UserKind::Customer, id: name.to_string(), username: name.to_string(), display_name: None, session: None };
        ensure_customer_profile(state, &ident).await?;
        for (i, (from_staff, text)) in lines.iter().enumerate() {
            let (kind, author) = if *from_staff { (MessageKind::Staff, staff.clone()) } else { (MessageKind::Customer, ident.user_ref()) };
            let client_id = stable_uuid(&format!("seed:{name}:{i}"));
            post_message(
                state,
                NewMessage { conv: name, kind, author: Some(author), text, reply_to: None, client_id: &client_id, order_json: None, attachments: Vec::new() },
            )
            .await?;
        }
    }
    seed_panel(state, &agent).await?;
    tracing::info!("dev seed: agent demo/demo and {} demo customers", CUSTOMERS.len());
    Ok(())
}

const MIN: i64 = 60_000;
const DAY: i64 = 24 * 60 * MIN;

/// (customer, ledger: (kind, amount, reason, age), vouchers: (id, title, code, expires in, state)).
type Ledger = &'static [(&'static str, i64, &'static str, i64)];
type Vouchers = &'static [(&'static str, &'static str, &'static str, i64, VoucherState)];
const PANEL: &[(&str, Ledger, Vouchers)] = &[
    (
        "alice",
        &[("earn", 120, "Order #1036", 9 * DAY), ("earn", 45, "Order #1040", 2 * DAY), ("spend", 100, "Free coffee", DAY), ("award", 20, "Sorry for the wait", 3 * MIN)],
        &[("v-alice-pastry", "Free pastry", "PASTRY-ALICE", 14 * DAY, VoucherState::Active), ("v-alice-10", "10% off your next order", "TENOFF-7Q2", 30 * DAY, VoucherState::Active)],
    ),
    ("bob", &[("earn", 300, "Order #1990", 5 * DAY)], &[("v-bob-vegan", "Vegan week: 2 for 1", "VEGAN-2FOR1", 6 * DAY, VoucherState::Active)]),
    (
        "carol",
        &[("earn", 60, "Welcome bonus", 30 * DAY), ("earn", 80, "Order #3001", 20 * DAY), ("spend", 50, "Free muffin", 10 * DAY)],
        &[("v-carol-coffee", "Free coffee at 150 points", "COFFEE-150", 60 * DAY, VoucherState::Active)],
    ),
    (
        "dave",
        &[("earn", 500, "Order #4000", 12 * DAY), ("award", 50, "Birthday", 4 * DAY)],
        &[("v-dave-old", "Summer special", "SUMMER-OLD", -2 * DAY, VoucherState::Active), ("v-dave-new", "Free upsize", "UPSIZE-DAVE", 10 * DAY, VoucherState::Active)],
    ),
    ("erin", &[], &[]),
];

/// (order id, customer, items (name, qty, unit price in cents), statuses with their age).
type Items = &'static [(&'static str, u32, i64)];
type Statuses = &'static [(OrderStatus, i64)];
const ORDERS: &[(&str, &str, Items, Statuses)] = &[
    ("1036", "alice", &[("Flat white", 2, 380), ("Croissant", 1, 290)], &[(OrderStatus::Completed, 9 * DAY)]),
    ("1040", "alice", &[("Latte", 1, 390)], &[(OrderStatus::Completed, 2 * DAY)]),
    ("1042", "alice", &[("Latte", 1, 390), ("Banana bread", 1, 320)], &[(OrderStatus::Placed, 25 * MIN), (OrderStatus::Preparing, 20 * MIN)]),
    ("1990", "bob", &[("Oat cappuccino", 1, 410), ("Vegan brownie", 2, 300)], &[(OrderStatus::Completed, 5 * DAY)]),
    ("2001", "bob", &[("Oat latte", 1, 420)], &[(OrderStatus::Ready, 4 * MIN)]),
    ("3001", "carol", &[("Espresso", 2, 250)], &[(OrderStatus::Completed, 20 * DAY)]),
    ("3002", "carol", &[("Iced tea", 1, 300)], &[(OrderStatus::Cancelled, 8 * DAY)]),
    ("4001", "dave", &[("Americano", 3, 300), ("Bagel", 1, 350)], &[(OrderStatus::Accepted, 2 * MIN)]),
    ("5001", "erin", &[("Hot chocolate", 1, 360)], &[(OrderStatus::Completed, 15 * DAY)]),
];

fn cents(c: i64) -> serde_json::Number {
    serde_json::Number::from_f64(c as f64 / 100.0).unwrap_or_else(|| serde_json::Number::from(0))
}

/// Balances, vouchers and orders for the demo customers (idempotent).
async fn seed_panel(state: &AppState, agent: &store::Agent) -> Result<(), GatewayError> {
    let now = schema::now_ms();
    let by_agent = Actor { id: agent.id.clone(), username: agent.username.clone(), display_name: Some(agent.display_name.clone()) };
    for (name, ledger, vouchers) in PANEL {
        for (i, (kind, amount, reason, age)) in ledger.iter().enumerate() {
            let reason = Some(reason.to_string());
            let (action, by) = match *kind {
                "earn" => (PointsAction::Earn { amount: *amount, reason }, None),
                "spend" => (PointsAction::Spend { amount: *amount, reason }, None),
                _ => (PointsAction::Award { amount: *amount, reason }, Some(by_agent.clone())),
            };
            let cmd = PointsCommand {
                customer: name.to_string(),
                idempotency_key: format!("seed:{name}:{i}"),
                action,
                by,
                ts: now - age,
            };
            state.loyalty.apply(&cmd).await?;
        }
        for (id, title, code, expires_in, vstate) in vouchers.iter() {
            let v = Voucher { id: id.to_string(), title: title.to_string(), code: code.to_string(), expires_at: Some(now + expires_in), state: *vstate };
            state.loyalty.put_voucher(name, &v).await?;
        }
    }
    // Event times from the start of the hour: two gateways seeding at once
    // send identical events, which the store treats as repeats.
    let base = now - now.rem_euclid(60 * MIN);
    for (id, customer, lines, statuses) in ORDERS {
        let items: Vec<OrderItem> =
            lines.iter().map(|(n, q, p)| OrderItem { name: n.to_string(), qty: *q, price: Some(cents(*p)) }).collect();
        let total = cents(lines.iter().map(|(_, q, p)| i64::from(*q) * p).sum());
        for (status, age) in statuses.iter() {
            // Only the first run creates the events: a restart would stamp them
            // with new times, and newer times would count as new events.
            if state.loyalty.order(id).await?.is_some_and(|o| o.history.iter().any(|h| h.status == *status)) {
                continue;
            }
            let ev = OrderEvent { order_id: id.to_string(), customer_id: customer.to_string(), status: *status, items: items.clone(), total: total.clone(), currency: Some("EUR".into()), ts: base - age };
            crate::domain::orders::apply_event(state, &ev).await?;
        }
    }
    Ok(())
}

//! Order events from the order system (`POST /api/orders/events`) and the
//! order progress cards they drive.
//!
//! Processed here rather than in the worker because a card, and each update
//! of it, needs a conversation position, which only the gateway's scripts
//! assign (see docs/architecture.md). Per event, under a short per-order lock
//! in Redis (so concurrent events of one order create exactly one card and
//! update it in order):
//!
//! 1. the loyalty store records the event in one transaction (newest
//!    `(ts, status)` wins, every status joins the history, a repeat is a no-op);
//! 2. if the order has no card yet, the card is posted like any message
//!    (kind `order`, `client_id` derived from the order id, so a retry finds
//!    the same card);
//! 3. if the card shows an older state, a script takes a position for the
//!    update, adds the `order` frame to the replay stream, and the frame goes
//!    live to both sides and to the worker (`LogEvent::OrderCard`), followed
//!    by a system message when the status changed;
//! 4. the store records which state the card shows.
//!
//! Steps 2-4 compare the card's recorded state with the order's, so an event
//! retried after a crash halfway completes the work instead of skipping it.

use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use redis_conn::Call;
use schema::envelope::{Audience, LogEvent, Relay};
use schema::frames::{ErrorCode, MessageKind, ServerFrame};
use schema::loyalty::{OrderEvent, OrderItem, OrderStatus, MAX_ORDER_ITEMS};
use serde_json::{json, Value};
use store::loyalty::{CardState, OrderOutcome};
use subtle::ConstantTimeEq;

use crate::api::read_json;
use crate::error::{json_response, Body, GatewayError};
use crate::handlers::{post_message, NewMessage};
use crate::broker::replies::CardReply;
use crate::broker::template::subst;
use crate::broker::Publish;
use crate::ids::stable_uuid;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Service token accepted in dev mode when `CHAT_SERVICE_TOKEN` is not set.
pub const DEV_SERVICE_TOKEN: &str = "dev-service-token";
/// The per-order lock expires by itself after this, should its holder die.
const LOCK_TTL_MS: u64 = 10_000;
/// How long an event waits for the lock before answering 503.
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// Longest item name, currency code.
const MAX_NAME_CHARS: usize = 200;
const MAX_CURRENCY_CHARS: usize = 8;
const MAX_QTY: u64 = 10_000;

/// Is the request signed with the service token? Outside dev mode an unset
/// token disables the endpoint.
fn check_service_token(state: &AppState, req: &Request<Incoming>) -> Result<()> {
    let expected = match (&state.cfg.service_token, state.cfg.dev) {
        (Some(t), _) if !t.is_empty() => t.as_str(),
        (_, true) => DEV_SERVICE_TOKEN,
        _ => return Err(GatewayError::unauthorized("order events are disabled: set CHAT_SERVICE_TOKEN")),
    };
    let given = crate::auth::bearer(req)
        .ok_or_else(|| GatewayError::unauthorized("missing Authorization: Bearer <service token>"))?;
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(GatewayError::unauthorized("wrong service token"))
    }
}

fn invalid(msg: impl Into<String>) -> GatewayError {
    GatewayError::invalid(msg)
}

fn non_negative_number(v: &Value, what: &str) -> Result<serde_json::Number> {
    match v {
        Value::Number(n) if n.as_f64().is_some_and(|f| f.is_finite() && f >= 0.0) => Ok(n.clone()),
        _ => Err(invalid(format!("{what} must be a number >= 0"))),
    }
}

/// Validates the body `{order_id, customer_id, status, items, total, ts, currency?}`.
pub fn parse_event(body: &Value) -> Result<OrderEvent> {
    let o = body.as_object().ok_or_else(|| invalid("expected a JSON object"))?;
    let order_id = match o.get("order_id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.as_u64().is_some() => n.to_string(),
        _ => return Err(invalid("order_id is required (a string or a whole number)")),
    };
    if !schema::ids::valid_id(&order_id) {
        return Err(invalid("order_id: 1..64 of letters, digits, `_`, `-`, `.`"));
    }
    let customer_id = o.get("customer_id").and_then(Value::as_str).ok_or_else(|| invalid("customer_id is required"))?;
    if !schema::ids::valid_id(customer_id) {
        return Err(invalid("customer_id is not a valid id"));
    }
    let status = o
        .get("status")
        .and_then(Value::as_str)
        .and_then(OrderStatus::parse)
        .ok_or_else(|| invalid("status must be one of placed, accepted, preparing, ready, completed, cancelled"))?;
    let raw_items = o.get("items").and_then(Value::as_array).ok_or_else(|| invalid("items must be an array"))?;
    if raw_items.len() > MAX_ORDER_ITEMS {
        return Err(invalid(format!("items: at most {MAX_ORDER_ITEMS}")));
    }
    let mut items = Vec::with_capacity(raw_items.len());
    for (i, it) in raw_items.iter().enumerate() {
        let name = it.get("name").and_then(Value::as_str).map(str::trim).unwrap_or("");
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(invalid(format!("items[{i}].name: 1..{MAX_NAME_CHARS} characters")));
        }
        let qty = match it.get("qty") {
            None | Some(Value::Null) => 1,
            Some(q) => q
                .as_u64()
                .filter(|q| (1..=MAX_QTY).contains(q))
                .ok_or_else(|| invalid(format!("items[{i}].qty must be a whole number from 1 to {MAX_QTY}")))?,
        };
        let price = match it.get("price") {
            None | Some(Value::Null) => None,
            Some(p) => Some(non_negative_number(p, &format!("items[{i}].price"))?),
        };
        items.push(OrderItem { name: name.to_string(), qty: qty as u32, price });
    }
    let total = non_negative_number(o.get("total").unwrap_or(&Value::Null), "total")?;
    let ts = o
        .get("ts")
        .and_then(Value::as_i64)
        .filter(|t| *t > 0)
        .ok_or_else(|| invalid("ts must be the event time in milliseconds since the epoch"))?;
    let currency = match o.get("currency") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if !c.is_empty() && c.chars().count() <= MAX_CURRENCY_CHARS => Some(c.clone()),
        Some(_) => return Err(invalid(format!("currency: 1..{MAX_CURRENCY_CHARS} characters"))),
    };
    Ok(OrderEvent { order_id, customer_id: customer_id.to_string(), status, items, total, currency, ts })
}

/// `POST /api/orders/events` -> 202 `{"order_id","status","duplicate","card_seq"}`.
pub async fn order_event(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    check_service_token(state, &req)?;
    let body: Value = read_json(req).await?;
    let ev = parse_event(&body)?;
    let out = apply_event(state, &ev).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({
            "order_id": out.order.id,
            "status": out.order.status,
            "duplicate": out.repeated,
            "card_seq": out.card.seq,
        }),
    ))
}

/// Records an event and brings its card up to date (see the module doc).
/// Returns the outcome with `card` as it is afterwards.
pub async fn apply_event(state: &AppState, ev: &OrderEvent) -> Result<OrderOutcome> {
    if state.store.customer(&ev.customer_id).await?.is_none() {
        return Err(GatewayError::not_found(format!("no customer `{}`", ev.customer_id)));
    }
    let lock = OrderLock::acquire(state, &ev.customer_id, &ev.order_id).await?;
    let r = apply_locked(state, ev).await;
    lock.release(state).await;
    r
}

async fn apply_locked(state: &AppState, ev: &OrderEvent) -> Result<OrderOutcome> {
    let mut out = state.loyalty.apply_order_event(ev).await?;
    if !out.card_stale() {
        return Ok(out);
    }
    let conv = out.order.customer_id.clone();
    let order = &out.order;
    let card = order.card();
    let card_json = serde_json::to_string(&card).map_err(|e| invalid(format!("order card: {e}")))?;
    let mut previous = out.card.status;
    let seq = if out.card.seq == 0 {
        let client_id = stable_uuid(&format!("order-card:{}", order.id));
        let text = format!("Order #{}", order.id);
        let p = post_message(
            state,
            NewMessage {
                conv: &conv,
                kind: MessageKind::Order,
                author: None,
                text: &text,
                reply_to: None,
                client_id: &client_id,
                order_json: Some(card_json.clone()),
            },
        )
        .await?;
        if p.duplicate {
            // Posted by an earlier attempt that died before recording it: it
            // may show an older state, so update it (no status message: which
            // status it showed is unknown).
            update_card(state, &conv, p.seq, &card, &card_json).await?;
        }
        previous = Some(order.status);
        p.seq
    } else {
        update_card(state, &conv, out.card.seq, &card, &card_json).await?;
        out.card.seq
    };
    if previous != Some(order.status) {
        let text = format!("Order #{} is now {}", order.id, order.status.as_str());
        let client_id =
            stable_uuid(&format!("order-status:{}:{}:{}", order.id, order.status.as_str(), order.updated_at));
        post_message(
            state,
            NewMessage {
                conv: &conv,
                kind: MessageKind::System,
                author: None,
                text: &text,
                reply_to: None,
                client_id: &client_id,
                order_json: None,
            },
        )
        .await?;
    }
    let shown = CardState { seq, status: Some(order.status), ts: order.updated_at };
    state.loyalty.mark_order_card(&order.id, shown).await?;
    out.card = shown;
    Ok(out)
}

/// Positions an update of the card at `seq`, puts it in the replay stream,
/// relays it to both sides and logs it for the worker.
async fn update_card(
    state: &AppState,
    conv: &str,
    seq: u64,
    card: &schema::loyalty::OrderCard,
    card_json: &str,
) -> Result<()> {
    let order = serde_json::to_value(card).map_err(|e| invalid(format!("order card: {e}")))?;
    let frame = ServerFrame::Order { conversation: conv.to_string(), pos: 0, seq, order }.to_json();
    let k = &state.keys;
    let call = Call::new()
        .key(k.seq(conv))
        .key(k.replay(conv))
        .key(k.customer_nodes(conv))
        .key(k.watchers(conv))
        .arg(&frame)
        .arg(state.cfg.replay_len)
        .arg(state.cfg.replay_ttl_secs);
    let mut seeded = false;
    loop {
        match state.broker().run::<CardReply>(&state.scripts.card_update, &call).await? {
            CardReply::Ok { pos, targets } => {
                let ev = LogEvent::OrderCard {
                    conversation: conv.to_string(),
                    pos,
                    seq,
                    order_json: card_json.to_string(),
                    ts: schema::now_ms(),
                };
                let relay = Relay {
                    audience: Audience::Both,
                    conversation: Some(conv.to_string()),
                    pos,
                    frame: subst(&frame, "pos", pos),
                };
                return state.broker().publish(Publish { log: Some(&ev), relay: Some((&relay, &targets)) }).await;
            }
            // Redis lost the conversation's counter: continue it from the record.
            CardReply::NoSequence if !seeded => {
                seeded = true;
                let c = state
                    .store
                    .customer(conv)
                    .await?
                    .ok_or_else(|| GatewayError::not_found(format!("no customer `{conv}`")))?;
                crate::auth::seed_conversation(state, conv, &c.username, c.avatar_url.as_deref()).await?;
            }
            other => {
                tracing::error!(reply = ?other, "card update script: unexpected status");
                return Err(GatewayError::client(ErrorCode::Unavailable, "could not update the order card, retry"));
            }
        }
    }
}

/// A short lock on one order (`SET NX PX` with a random token).
struct OrderLock {
    key: String,
    token: String,
}

impl OrderLock {
    async fn acquire(state: &AppState, conv: &str, order_id: &str) -> Result<OrderLock> {
        let key = state.keys.order_lock(conv, order_id);
        let token = crate::ids::random_token();
        let started = Instant::now();
        let mut conn = state.redis();
        loop {
            let got: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LOCK_TTL_MS)
                .query_async(&mut conn)
                .await?;
            if got.is_some() {
                return Ok(OrderLock { key, token });
            }
            if started.elapsed() > LOCK_WAIT {
                return Err(GatewayError::client(ErrorCode::Unavailable, "the order is busy, retry the event"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Best effort: the lock expires by itself anyway.
    async fn release(self, state: &AppState) {
        let call = Call::new().key(&self.key).arg(&self.token);
        if let Err(e) = state.broker().run::<i64>(&state.scripts.order_unlock, &call).await {
            tracing::warn!(error = %e, "order lock not released (it expires by itself)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> std::result::Result<OrderEvent, String> {
        parse_event(&v).map_err(|e| e.to_frame_error().message)
    }

    #[test]
    fn events() {
        let ok = json!({"order_id": 1042, "customer_id": "alice", "status": "placed",
            "items": [{"name": "Latte", "qty": 2, "price": 3.5}], "total": 7.0, "ts": 1_700_000_000_000i64});
        let ev = parse(ok.clone()).unwrap();
        assert_eq!(ev.order_id, "1042");
        assert_eq!(ev.items[0].qty, 2);
        let mut bad = ok.clone();
        bad["status"] = json!("shipped");
        assert!(parse(bad).unwrap_err().contains("status"));
        let mut bad = ok.clone();
        bad["total"] = json!(-1);
        assert!(parse(bad).unwrap_err().contains("total"));
        let mut bad = ok.clone();
        bad["items"][0]["qty"] = json!(0);
        assert!(parse(bad).unwrap_err().contains("qty"));
        let mut bad = ok.clone();
        bad["order_id"] = json!("a b");
        assert!(parse(bad).unwrap_err().contains("order_id"));
        let mut bad = ok;
        bad["ts"] = json!("yesterday");
        assert!(parse(bad).unwrap_err().contains("ts"));
    }

    #[test]
    fn card_frame_has_a_position_placeholder() {
        let f = ServerFrame::Order { conversation: "c".into(), pos: 0, seq: 4, order: json!({"id": "1"}) }.to_json();
        assert!(f.starts_with(r#"{"type":"order","conversation":"c","pos":0,"seq":4,"#), "{f}");
        assert!(subst(&f, "pos", 9).contains(r#""pos":9,"seq":4"#));
    }
}

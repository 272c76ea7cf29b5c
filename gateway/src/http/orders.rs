//! `POST /api/orders/events`: order events from the order system, signed
//! with the service token, parsed and validated here, applied by
//! `domain::orders` (which posts and updates the order cards).

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use schema::loyalty::{OrderEvent, OrderItem, OrderStatus, MAX_ORDER_ITEMS};
use serde::Serialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

use super::extract::read_json;
use crate::domain::orders::apply_event;
use crate::error::{json_response, Body, ErrorReply, GatewayError};
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Service token accepted in dev mode when `CHAT_SERVICE_TOKEN` is not set.
pub const DEV_SERVICE_TOKEN: &str = "dev-service-token";
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

/// The body of an order event (parsed by [`parse_event`], whose messages name the problem).
#[derive(ToSchema)]
#[allow(dead_code)]
struct OrderEventBody {
    /// A string id (letters, digits, `_`, `-`, `.`; 1..64) or a whole number.
    #[schema(value_type = String)]
    order_id: Value,
    /// The customer (its conversation).
    customer_id: String,
    #[schema(pattern = "^(placed|accepted|preparing|ready|completed|cancelled)$")]
    status: String,
    /// At most 50 items.
    items: Vec<OrderItemBody>,
    /// >= 0.
    #[schema(minimum = 0)]
    total: f64,
    /// Event time, Unix milliseconds (> 0); an older event than the last applied is a duplicate.
    #[schema(minimum = 1)]
    ts: i64,
    /// 1..8 characters.
    currency: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct OrderItemBody {
    /// 1..200 characters.
    name: String,
    /// 1..10000 (default 1).
    #[schema(minimum = 1, maximum = 10000)]
    qty: Option<u32>,
    #[schema(minimum = 0)]
    price: Option<f64>,
}

#[derive(Serialize, ToSchema)]
struct OrderEventReply {
    order_id: String,
    #[schema(value_type = String)]
    status: Value,
    /// The event was already applied (or older than the last one).
    duplicate: bool,
    /// The order card's message seq in the conversation.
    card_seq: u64,
}

/// `POST /api/orders/events` -> 202 `{"order_id","status","duplicate","card_seq"}`.
#[utoipa::path(post, path = "/api/orders/events", tag = "orders", request_body = OrderEventBody, security(("service" = [])),
    responses(
        (status = 202, description = "Applied: the order card is posted or updated", body = OrderEventReply),
        (status = 400, description = "Invalid event", body = ErrorReply),
        (status = 401, description = "No or wrong service token", body = ErrorReply),
        (status = 404, description = "No such customer", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 503, description = "Redis or the store unavailable", body = ErrorReply),
    ))]
pub async fn order_event(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>> {
    check_service_token(state, &req)?;
    let body: Value = read_json(req).await?;
    let ev = parse_event(&body)?;
    let out = apply_event(state, &ev).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &OrderEventReply { order_id: out.order.id.clone(), status: json!(out.order.status), duplicate: out.repeated, card_seq: out.card.seq },
    ))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::template::subst;
    use schema::frames::ServerFrame;

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

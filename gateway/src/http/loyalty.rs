//! The customer panel's REST calls: vouchers, orders, transactions, and the
//! points actions (Give Points, Reset Balance), validated here and executed
//! by `domain::points`.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use schema::loyalty::{OrderFilter, PointsAction, MAX_IDEMPOTENCY_KEY, MAX_REASON_CHARS, POINTS_HARD_MAX};
use serde_json::{json, Value};

use super::extract::{self, read_json};
use crate::config::Config;
use crate::domain::points;
use crate::error::{json_response, Body, GatewayError};
use crate::identity::Identity;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Largest page of transactions.
const MAX_TX_PAGE: usize = 100;
/// Default page of transactions.
const DEFAULT_TX_PAGE: usize = 20;
/// Orders listed per panel section.
const ORDERS_PAGE: usize = 20;

/// Agents, or the customer whose panel it is; the customer must exist.
async fn panel_reader(state: &AppState, req: &Request<Incoming>, id: &str) -> Result<Identity> {
    if !schema::ids::valid_id(id) {
        return Err(GatewayError::invalid("not a valid customer id"));
    }
    let who = extract::agent_or_owner(state, req, id).await?;
    customer_must_exist(state, id).await?;
    Ok(who)
}

async fn customer_must_exist(state: &AppState, id: &str) -> Result<()> {
    match state.store.customer(id).await? {
        Some(_) => Ok(()),
        None => Err(GatewayError::not_found(format!("no customer `{id}`"))),
    }
}

/// `GET /api/customers/{id}/vouchers`: the active vouchers.
pub async fn vouchers(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    panel_reader(state, &req, id).await?;
    let items = state.loyalty.vouchers(id).await?;
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

/// `GET /api/customers/{id}/orders?state=active|recent`.
pub async fn orders(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    panel_reader(state, &req, id).await?;
    let filter = match extract::query(&req).get("state").map(String::as_str) {
        None | Some("" | "active") => OrderFilter::Active,
        Some("recent") => OrderFilter::Recent,
        Some(_) => return Err(GatewayError::invalid("state must be `active` or `recent`")),
    };
    let items = state.loyalty.orders(id, filter, ORDERS_PAGE).await?;
    Ok(json_response(StatusCode::OK, &json!({ "items": items })))
}

/// `GET /api/customers/{id}/transactions?cursor=&limit=`: the ledger,
/// newest first; `next_cursor` pages to older entries.
pub async fn transactions(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    panel_reader(state, &req, id).await?;
    let q = extract::query(&req);
    let before = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => Some(c.parse::<u64>().map_err(|_| GatewayError::invalid("bad cursor"))?),
        None => None,
    };
    let limit = match q.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => {
            l.parse::<usize>().map_err(|_| GatewayError::invalid("limit must be a number"))?.clamp(1, MAX_TX_PAGE)
        }
        None => DEFAULT_TX_PAGE,
    };
    let page = state.loyalty.transactions(id, before, limit).await?;
    let next = if page.has_more { page.items.last().map(|e| e.seq.to_string()) } else { None };
    Ok(json_response(StatusCode::OK, &json!({ "items": page.items, "next_cursor": next })))
}

/// The `Idempotency-Key` header: required, 1..128 visible ASCII characters.
fn idempotency_key(req: &Request<Incoming>) -> Result<String> {
    let v = req
        .headers()
        .get("idempotency-key")
        .ok_or_else(|| GatewayError::invalid("the Idempotency-Key header is required (a fresh UUID per action)"))?;
    let k = v.to_str().map(str::trim).unwrap_or("");
    if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(GatewayError::invalid(format!(
            "Idempotency-Key: 1..{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(k.to_string())
}

/// Parses `{"amount", "reason"?}` with messages that name the problem.
pub fn parse_award(body: &Value, max: i64) -> Result<(i64, Option<String>)> {
    let obj =
        body.as_object().ok_or_else(|| GatewayError::invalid("expected a JSON object {\"amount\", \"reason\"?}"))?;
    let amount = match obj.get("amount") {
        None | Some(Value::Null) => return Err(GatewayError::invalid("amount is required")),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                i
            } else if n.as_u64().is_some() {
                // Above i64::MAX: certainly above the maximum.
                return Err(GatewayError::invalid(format!("amount must be at most {max}")));
            } else {
                return Err(GatewayError::invalid("amount must be a whole number"));
            }
        }
        Some(_) => return Err(GatewayError::invalid("amount must be a number (a whole number of points)")),
    };
    if amount <= 0 {
        return Err(GatewayError::invalid("amount must be a positive whole number"));
    }
    if amount > max {
        return Err(GatewayError::invalid(format!("amount must be at most {max}")));
    }
    let reason = match obj.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.chars().count() > MAX_REASON_CHARS {
                return Err(GatewayError::invalid(format!("reason: at most {MAX_REASON_CHARS} characters")));
            }
            (!s.is_empty()).then(|| s.to_string())
        }
        Some(_) => return Err(GatewayError::invalid("reason must be a string")),
    };
    Ok((amount, reason))
}

/// The largest award the configuration allows.
fn max_points(cfg: &Config) -> i64 {
    cfg.max_points.clamp(1, POINTS_HARD_MAX)
}

/// `POST /api/customers/{id}/points` `{"amount","reason"?}` + `Idempotency-Key`.
pub async fn give_points(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    let who = extract::agent(state, &req).await?;
    if !schema::ids::valid_id(id) {
        return Err(GatewayError::invalid("not a valid customer id"));
    }
    let key = idempotency_key(&req)?;
    let body: Value = read_json(req).await?;
    let (amount, reason) = parse_award(&body, max_points(&state.cfg))?;
    customer_must_exist(state, id).await?;
    act(state, &who, id, key, PointsAction::Award { amount, reason }).await
}

/// `POST /api/customers/{id}/points/reset` + `Idempotency-Key` (the body is ignored).
pub async fn reset_points(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    let who = extract::agent(state, &req).await?;
    if !schema::ids::valid_id(id) {
        return Err(GatewayError::invalid("not a valid customer id"));
    }
    let key = idempotency_key(&req)?;
    customer_must_exist(state, id).await?;
    act(state, &who, id, key, PointsAction::Reset).await
}

async fn act(
    state: &AppState,
    who: &Identity,
    customer: &str,
    key: String,
    action: PointsAction,
) -> Result<Response<Body>> {
    let outcome = points::act(state, who, customer, &key, action).await?;
    let mut body = json!({
        "balance": outcome.balance,
        "version": outcome.version,
        "transaction": outcome.transaction,
        "noop": outcome.noop,
    });
    if outcome.noop {
        body["message"] = json!("the balance is already 0: nothing to reset");
    }
    let mut resp = json_response(StatusCode::OK, &body);
    if outcome.replayed {
        // Same body as the first time; the header tells a repeat apart.
        resp.headers_mut().insert("idempotent-replayed", hyper::header::HeaderValue::from_static("true"));
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> std::result::Result<(i64, Option<String>), String> {
        parse_award(&v, 100_000).map_err(|e| e.to_frame_error().message)
    }

    #[test]
    fn amounts() {
        assert_eq!(parse(json!({"amount": 50})).unwrap(), (50, None));
        assert_eq!(parse(json!({"amount": 50, "reason": " sorry "})).unwrap(), (50, Some("sorry".into())));
        assert_eq!(parse(json!({"amount": 100000, "reason": ""})).unwrap(), (100000, None));
        assert!(parse(json!({"amount": 0})).unwrap_err().contains("positive"));
        assert!(parse(json!({"amount": -3})).unwrap_err().contains("positive"));
        assert!(parse(json!({"amount": 100001})).unwrap_err().contains("at most 100000"));
        assert!(parse(json!({"amount": 18446744073709551615u64})).unwrap_err().contains("at most"));
        assert!(parse(json!({"amount": 1.5})).unwrap_err().contains("whole"));
        assert!(parse(json!({"amount": "10"})).unwrap_err().contains("number"));
        assert!(parse(json!({})).unwrap_err().contains("required"));
        assert!(parse(json!([1])).unwrap_err().contains("object"));
        assert!(parse(json!({"amount": 5, "reason": 7})).unwrap_err().contains("reason"));
        assert!(parse(json!({"amount": 5, "reason": "x".repeat(201)})).unwrap_err().contains("reason"));
    }
}

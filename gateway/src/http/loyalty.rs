//! The customer panel's REST calls: vouchers, orders, transactions, and the
//! points actions (Give Points, Reset Balance), validated here and executed
//! by `domain::points`.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use schema::loyalty::{OrderFilter, PointsAction, MAX_IDEMPOTENCY_KEY, MAX_REASON_CHARS, POINTS_HARD_MAX};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use super::extract::{self, read_json, IdParam};
use crate::config::Config;
use crate::domain::points;
use crate::error::{json_response, Body, ErrorReply, GatewayError};
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

#[derive(Serialize, ToSchema)]
struct Items {
    /// Vouchers or orders (docs/loyalty-service.md).
    #[schema(value_type = Vec<Object>)]
    items: Value,
}

/// `GET /api/customers/{id}/vouchers`: the active vouchers.
#[utoipa::path(get, path = "/api/customers/{id}/vouchers", tag = "customers", params(IdParam), security(("bearer" = [])),
    responses(
        (status = 200, description = "Active vouchers", body = Items),
        (status = 400, description = "Not a valid id", body = ErrorReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 403, description = "Another customer", body = ErrorReply),
        (status = 404, description = "No such customer", body = ErrorReply),
        (status = 503, description = "The loyalty service or the store unavailable", body = ErrorReply),
    ))]
pub async fn vouchers(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    panel_reader(state, &req, id).await?;
    let items = state.loyalty.vouchers(id).await?;
    Ok(json_response(StatusCode::OK, &Items { items: json!(items) }))
}

/// Query of `GET /api/customers/{id}/orders`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct OrdersQuery {
    /// `active` (default) or `recent`.
    #[param(pattern = "^(active|recent)$")]
    state: Option<String>,
}

/// `GET /api/customers/{id}/orders?state=active|recent`.
#[utoipa::path(get, path = "/api/customers/{id}/orders", tag = "customers", params(IdParam, OrdersQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Orders", body = Items),
        (status = 400, description = "Bad id or state", body = ErrorReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 403, description = "Another customer", body = ErrorReply),
        (status = 404, description = "No such customer", body = ErrorReply),
        (status = 503, description = "The loyalty service or the store unavailable", body = ErrorReply),
    ))]
pub async fn orders(state: &AppState, req: Request<Incoming>, id: &str) -> Result<Response<Body>> {
    panel_reader(state, &req, id).await?;
    let filter = match extract::query(&req).get("state").map(String::as_str) {
        None | Some("" | "active") => OrderFilter::Active,
        Some("recent") => OrderFilter::Recent,
        Some(_) => return Err(GatewayError::invalid("state must be `active` or `recent`")),
    };
    let items = state.loyalty.orders(id, filter, ORDERS_PAGE).await?;
    Ok(json_response(StatusCode::OK, &Items { items: json!(items) }))
}

/// Query of `GET /api/customers/{id}/transactions`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct TransactionsQuery {
    /// `next_cursor` of the previous page.
    cursor: Option<u64>,
    /// Page size, 1..100 (default 20).
    limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
struct TransactionsPage {
    /// Ledger entries, newest first.
    #[schema(value_type = Vec<Object>)]
    items: Value,
    next_cursor: Option<String>,
}

/// `GET /api/customers/{id}/transactions?cursor=&limit=`: the ledger,
/// newest first; `next_cursor` pages to older entries.
#[utoipa::path(get, path = "/api/customers/{id}/transactions", tag = "customers", params(IdParam, TransactionsQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of the ledger", body = TransactionsPage),
        (status = 400, description = "Bad id, cursor or limit", body = ErrorReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 403, description = "Another customer", body = ErrorReply),
        (status = 404, description = "No such customer", body = ErrorReply),
        (status = 503, description = "The loyalty service or the store unavailable", body = ErrorReply),
    ))]
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
    Ok(json_response(StatusCode::OK, &TransactionsPage { items: json!(page.items), next_cursor: next }))
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

/// The body of Give Points (parsed by [`parse_award`], whose messages name the problem).
#[derive(ToSchema)]
#[allow(dead_code)]
struct AwardBody {
    /// Whole points, 1..CHAT_MAX_POINTS.
    #[schema(minimum = 1, example = 50)]
    amount: i64,
    /// Shown in the system message; at most 200 characters.
    #[schema(max_length = 200, example = "sorry for the wait")]
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
struct PointsReply {
    balance: i64,
    version: u64,
    /// The ledger entry (null for a no-op reset).
    #[schema(value_type = Option<Object>)]
    transaction: Value,
    noop: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'static str>,
}

/// `POST /api/customers/{id}/points` `{"amount","reason"?}` + `Idempotency-Key`.
#[utoipa::path(post, path = "/api/customers/{id}/points", tag = "customers", request_body = AwardBody,
    params(IdParam,
        ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,128}$", example = "6f1c2a9e-8d1b-4a57-9a51-3f0e2b7c1d44", description = "A fresh UUID per action; a repeat returns the first outcome (header idempotent-replayed: true)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Applied (or replayed)", body = PointsReply),
        (status = 400, description = "Bad id, key or body", body = ErrorReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 403, description = "Agents only", body = ErrorReply),
        (status = 404, description = "No such customer", body = ErrorReply),
        (status = 409, description = "The key was used for another action", body = ErrorReply),
        (status = 413, description = "Body too large", body = ErrorReply),
        (status = 503, description = "No worker answered in time, or the loyalty service is down; retry with the same key", body = ErrorReply),
    ))]
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
#[utoipa::path(post, path = "/api/customers/{id}/points/reset", tag = "customers",
    params(IdParam,
        ("Idempotency-Key" = String, Header, pattern = "^[!-~]{1,128}$", example = "6f1c2a9e-8d1b-4a57-9a51-3f0e2b7c1d44", description = "A fresh UUID per action")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Reset (or a no-op at 0, or replayed)", body = PointsReply),
        (status = 400, description = "Bad id or key", body = ErrorReply),
        (status = 401, description = "No or unknown token", body = ErrorReply),
        (status = 403, description = "Agents only", body = ErrorReply),
        (status = 404, description = "No such customer", body = ErrorReply),
        (status = 409, description = "The key was used for another action", body = ErrorReply),
        (status = 503, description = "No worker answered in time, or the loyalty service is down", body = ErrorReply),
    ))]
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
    let body = PointsReply {
        balance: outcome.balance,
        version: outcome.version,
        transaction: json!(outcome.transaction),
        noop: outcome.noop,
        message: outcome.noop.then_some("the balance is already 0: nothing to reset"),
    };
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

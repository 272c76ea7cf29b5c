//! The customer panel's REST calls: vouchers, orders, transactions, and the
//! points actions (Give Points, Reset Balance).
//!
//! A points action is validated here (agents only, the customer exists, a
//! whole positive amount up to `CHAT_MAX_POINTS`, an `Idempotency-Key`),
//! then executed by a worker: this node `XADD`s a [`LoyaltyRequest`] to the
//! loyalty stream and waits (`BLPOP`, up to `CHAT_POINTS_WAIT_MS`) for the
//! worker's [`LoyaltyReply`]. Only after a successful reply does it post the
//! system message ("50 points awarded by Ann") and relay the new balance to
//! staff; a failed or missing reply is 503 and posts nothing. The system
//! message's `client_id` derives from the idempotency key, so a retry never
//! posts it twice.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use schema::envelope::{self, LoyaltyReply, LoyaltyRequest};
use schema::frames::{ErrorCode, MessageKind, ServerFrame};
use schema::keys::FIELD;
use schema::loyalty::{
    Actor, Balance, OrderFilter, PointsAction, PointsOutcome, MAX_IDEMPOTENCY_KEY, MAX_REASON_CHARS, POINTS_HARD_MAX,
};
use serde_json::{json, Value};
use store::loyalty::{HttpConfig, LoyaltyError, SharedLoyalty};

use crate::api::{self, read_json};
use crate::config::Config;
use crate::error::{json_response, Body, GatewayError};
use crate::handlers::{post_message, NewMessage};
use crate::registry::Identity;
use crate::ids::stable_uuid;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Approximate cap of the request stream (workers delete what they ack).
const REQUEST_STREAM_LEN: usize = 10_000;
/// A worker must finish a request this long before the gateway gives up, so
/// its reply is not thrown away.
const DEADLINE_MARGIN_MS: i64 = 500;
/// Largest page of transactions.
const MAX_TX_PAGE: usize = 100;
/// Default page of transactions.
const DEFAULT_TX_PAGE: usize = 20;
/// Orders listed per panel section.
const ORDERS_PAGE: usize = 20;

/// The loyalty store the configuration names (HTTP when `CHAT_LOYALTY_URL` is set).
pub fn open(cfg: &Config, store: &store::Store) -> anyhow::Result<SharedLoyalty> {
    let http = cfg.loyalty_url.as_ref().filter(|u| !u.is_empty()).map(|url| HttpConfig {
        url: url.clone(),
        token: cfg.loyalty_token.clone().filter(|t| !t.is_empty()),
        timeout: Duration::from_millis(cfg.loyalty_timeout_ms),
    });
    let l = store::loyalty::open(store, http)?;
    tracing::info!(backend = l.backend(), "loyalty store");
    Ok(l)
}

impl From<LoyaltyError> for GatewayError {
    fn from(e: LoyaltyError) -> Self {
        match e {
            LoyaltyError::Conflict(m) => GatewayError::client(ErrorCode::Conflict, m),
            LoyaltyError::Invalid(m) => GatewayError::invalid(m),
            LoyaltyError::NotFound(m) => GatewayError::not_found(m),
            LoyaltyError::Unavailable(m) => {
                tracing::warn!(error = %m, "loyalty service unavailable");
                GatewayError::client(ErrorCode::Unavailable, "the loyalty service is unavailable, retry shortly")
            }
            LoyaltyError::Store(e) => GatewayError::Store(e),
        }
    }
}

/// The balance for `GET /api/customers/{id}`; `None` when the loyalty store
/// cannot answer (the profile is still served: presence and name do not
/// depend on the loyalty service).
pub async fn balance(state: &AppState, customer: &str) -> Option<Balance> {
    match state.loyalty.balance(customer).await {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(error = %e, "balance unavailable");
            None
        }
    }
}

/// Agents, or the customer whose panel it is; the customer must exist.
async fn panel_reader(state: &AppState, req: &Request<Incoming>, id: &str) -> Result<Identity> {
    if !schema::ids::valid_id(id) {
        return Err(GatewayError::invalid("not a valid customer id"));
    }
    let who = api::agent_or_owner(state, req, id).await?;
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
    let filter = match api::query(&req).get("state").map(String::as_str) {
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
    let q = api::query(&req);
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
    let who = api::agent(state, &req).await?;
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
    let who = api::agent(state, &req).await?;
    if !schema::ids::valid_id(id) {
        return Err(GatewayError::invalid("not a valid customer id"));
    }
    let key = idempotency_key(&req)?;
    customer_must_exist(state, id).await?;
    act(state, &who, id, key, PointsAction::Reset).await
}

fn actor(who: &Identity) -> Actor {
    Actor { id: who.id.clone(), username: who.username.clone(), display_name: who.display_name.clone() }
}

async fn act(
    state: &AppState,
    who: &Identity,
    customer: &str,
    key: String,
    action: PointsAction,
) -> Result<Response<Body>> {
    let outcome = request(state, customer, &key, action.clone(), actor(who)).await?;
    announce(state, customer, &key, &action, &outcome, who).await?;
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

/// A connection of its own for `BLPOP`: a blocking command would stall every
/// other command multiplexed on the shared connection.
async fn blocking_connection(state: &AppState, wait: Duration) -> Result<redis_conn::RedisConn> {
    Ok(state.redis_target.connect(wait + Duration::from_secs(2)).await?)
}

fn unavailable(msg: &str) -> GatewayError {
    GatewayError::client(ErrorCode::Unavailable, msg)
}

/// Hands the action to a worker and waits for its outcome.
async fn request(
    state: &AppState,
    customer: &str,
    key: &str,
    action: PointsAction,
    by: Actor,
) -> Result<PointsOutcome> {
    let wait = Duration::from_millis(state.cfg.points_wait_ms.max(100));
    let id = uuid::Uuid::new_v4().simple().to_string();
    let req = LoyaltyRequest {
        id: id.clone(),
        customer: customer.to_string(),
        idempotency_key: key.to_string(),
        action,
        by,
        deadline_ms: schema::now_ms() + (wait.as_millis() as i64 - DEADLINE_MARGIN_MS).max(100),
    };
    let mut waiter = blocking_connection(state, wait).await?;
    let mut conn = state.redis();
    let _: String = redis::cmd("XADD")
        .arg(state.keys.loyalty())
        .arg("MAXLEN")
        .arg("~")
        .arg(REQUEST_STREAM_LEN)
        .arg("*")
        .arg(FIELD)
        .arg(envelope::encode(&req))
        .query_async(&mut conn)
        .await?;
    let reply_key = state.keys.loyalty_reply(&id);
    let popped: Option<(String, Vec<u8>)> = tokio::time::timeout(wait + Duration::from_secs(1), async {
        redis::cmd("BLPOP").arg(&reply_key).arg(wait.as_secs_f64()).query_async(&mut waiter).await
    })
    .await
    .unwrap_or(Ok(None))?;
    let Some((_, bytes)) = popped else {
        tracing::warn!(customer, "points action: no worker answered in time");
        return Err(unavailable(
            "the points service did not answer in time; retry with the same Idempotency-Key (it is never applied twice)",
        ));
    };
    match envelope::decode::<LoyaltyReply>(&bytes) {
        Ok(LoyaltyReply::Done(o)) => Ok(o),
        Ok(LoyaltyReply::Failed { code, message }) => Err(GatewayError::client(code, message)),
        Err(e) => {
            tracing::error!(error = %e, "undecodable loyalty reply");
            Err(unavailable("the points service sent an unreadable answer, retry with the same Idempotency-Key"))
        }
    }
}

/// The system message and the live balance, after an action that changed
/// something. Runs again on a replayed outcome: the message dedupes on its
/// `client_id`, and a first attempt that died before posting is completed.
async fn announce(
    state: &AppState,
    customer: &str,
    key: &str,
    action: &PointsAction,
    outcome: &PointsOutcome,
    who: &Identity,
) -> Result<()> {
    let Some(tx) = outcome.transaction.as_ref().filter(|_| !outcome.noop) else { return Ok(()) };
    // The original actor names the action, whoever retries it.
    let name =
        tx.by.as_ref().map(|a| a.shown_name().to_string()).unwrap_or_else(|| actor(who).shown_name().to_string());
    let text = match action {
        PointsAction::Reset => format!("Points balance reset to 0 by {name} ({} points removed)", -tx.amount),
        _ => match tx.reason.as_deref() {
            Some(r) => format!("{} points awarded by {name}: {r}", tx.amount),
            None => format!("{} points awarded by {name}", tx.amount),
        },
    };
    // The message dedupes on its client_id only while the send path
    // remembers it (CHAT_DEDUPE_TTL_SECS): a repeat older than half that is
    // not re-announced (its first execution announced it long ago).
    let half_ttl_ms = i64::try_from(state.cfg.dedupe_ttl_secs.saturating_mul(500)).unwrap_or(i64::MAX);
    let stale = outcome.replayed && schema::now_ms() - tx.ts > half_ttl_ms;
    if !stale {
        let client_id = stable_uuid(&format!("points:{customer}:{key}"));
        post_message(
            state,
            NewMessage {
                conv: customer,
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
    // A repeat's outcome may be older than later actions: relay the current balance.
    let now = if outcome.replayed {
        match state.loyalty.balance(customer).await {
            Ok(b) => b,
            Err(_) => return Ok(()),
        }
    } else {
        Balance { balance: outcome.balance, version: outcome.version }
    };
    let frame =
        ServerFrame::Points { customer: customer.to_string(), balance: now.balance, version: Some(now.version) };
    state.broker().to_all_staff(customer, frame.to_json()).await?;
    Ok(())
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

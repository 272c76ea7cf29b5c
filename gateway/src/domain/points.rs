//! Points actions (Give Points, Reset Balance) and the loyalty store.
//!
//! A points action, validated by its route (`http::loyalty`: agents only, the
//! customer exists, a whole positive amount up to `CHAT_MAX_POINTS`, an
//! `Idempotency-Key`), is executed by a worker: this node `XADD`s a [`LoyaltyRequest`] to the
//! loyalty stream and waits (`BLPOP`, up to `CHAT_POINTS_WAIT_MS`) for the
//! worker's [`LoyaltyReply`]. Only after a successful reply does it post the
//! system message ("50 points awarded by Ann") and relay the new balance to
//! staff; a failed or missing reply is 503 and posts nothing. The system
//! message's `client_id` derives from the idempotency key, so a retry never
//! posts it twice.

use std::time::Duration;

use schema::envelope::{self, LoyaltyReply, LoyaltyRequest};
use schema::frames::{ErrorCode, ServerFrame};
use schema::keys::FIELD;
use schema::loyalty::{Actor, Balance, PointsAction, PointsOutcome};
use store::loyalty::{HttpConfig, LoyaltyError, SharedLoyalty};

use super::messages::{post_message, NewMessage};
use crate::config::Config;
use crate::error::GatewayError;
use crate::identity::Identity;
use crate::ids::stable_uuid;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// Approximate cap of the request stream (workers delete what they ack).
const REQUEST_STREAM_LEN: usize = 10_000;
/// A worker must finish a request this long before the gateway gives up, so
/// its reply is not thrown away.
const DEADLINE_MARGIN_MS: i64 = 500;
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

/// Executes a points action through a worker, then announces it (system
/// message, live balance to staff).
pub async fn act(state: &AppState, who: &Identity, customer: &str, key: &str, action: PointsAction) -> Result<PointsOutcome> {
    let outcome = request(state, customer, key, action.clone(), actor(who)).await?;
    announce(state, customer, key, &action, &outcome, who).await?;
    Ok(outcome)
}

fn actor(who: &Identity) -> Actor {
    Actor { id: who.id.clone(), username: who.username.clone(), display_name: who.display_name.clone() }
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
        metrics::counter!(crate::metrics::POINTS_TIMEOUTS).increment(1);
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
    // The message dedupes on its client_id only while the conversation's
    // state remembers it (its recent window, until it idles out after
    // CHAT_REPLAY_TTL_SECS): a repeat older than half that is not
    // re-announced (its first execution announced it long ago).
    let half_ttl_ms = i64::try_from(state.cfg.replay_ttl_secs.saturating_mul(500)).unwrap_or(i64::MAX);
    let stale = outcome.replayed && schema::now_ms() - tx.ts > half_ttl_ms;
    if !stale {
        let client_id = stable_uuid(&format!("points:{customer}:{key}"));
        post_message(state, NewMessage::system(customer, &text, &client_id)).await?;
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

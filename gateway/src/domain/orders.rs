//! Order events (from the order system, `http::orders`) and the order
//! progress cards they drive.
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

use redis_conn::Call;
use schema::envelope::LogEvent;
use schema::frames::{ErrorCode, MessageKind, ServerFrame};
use schema::loyalty::OrderEvent;
use store::loyalty::{CardState, OrderOutcome};

use super::conversations::repair_conversation;
use super::messages::{post_message, NewMessage};
use crate::error::GatewayError;
use crate::broker::replies::CardReply;
use crate::broker::Publish;
use crate::ids::stable_uuid;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// The per-order lock expires by itself after this, should its holder die.
const LOCK_TTL_MS: u64 = 10_000;
/// How long an event waits for the lock before answering 503.
const LOCK_WAIT: Duration = Duration::from_secs(5);

fn invalid(msg: impl Into<String>) -> GatewayError {
    GatewayError::invalid(msg)
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
                attachments: Vec::new(),
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
        post_message(state, NewMessage::system(&conv, &text, &client_id)).await?;
    }
    let shown = CardState { seq, status: Some(order.status), ts: order.updated_at };
    state.loyalty.mark_order_card(&order.id, shown).await?;
    out.card = shown;
    Ok(out)
}

/// Positions an update of the card at `seq`, puts it in the replay stream
/// and on the conversation's channel (the script), and logs it for the worker.
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
        .key(k.state(conv))
        .key(k.replay(conv))
        .arg(&frame)
        .arg(state.cfg.replay_len)
        .arg(state.cfg.replay_ttl_secs)
        .arg(k.channel(conv));
    let mut repaired = false;
    loop {
        match state.broker().run::<CardReply>(&state.scripts.card_update, &call).await? {
            CardReply::Ok { pos } => {
                let ev = LogEvent::OrderCard {
                    conversation: conv.to_string(),
                    pos,
                    seq,
                    order_json: card_json.to_string(),
                    ts: schema::now_ms(),
                };
                return state.broker().publish(Publish { log: Some(&ev), relay: None }).await;
            }
            // Redis lost the conversation's state: continue it from the record.
            CardReply::NoState if !repaired => {
                repaired = true;
                repair_conversation(state, conv).await?;
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


//! Read receipts (`delivered`, `seen`): monotonic state per side, relayed
//! live to the other side and logged for the worker, never positioned
//! (docs/architecture.md, "Receipts do not take a position").

use redis_conn::Call;
use schema::envelope::{Audience, LogEvent, Relay};
use schema::frames::{ServerFrame, Side};

use super::conversations::ensure_conversation;
use crate::broker::replies::ReadReply;
use crate::broker::Publish;
use crate::error::GatewayError;
use crate::identity::Identity;
use crate::state::AppState;

type Result<T> = std::result::Result<T, GatewayError>;

/// `delivered` / `seen`: monotonic read state, a receipt to the other side, a log entry.
/// Returns whether the state changed (a receipt went out).
pub async fn read_state(state: &AppState, ident: &Identity, conv: String, seq: u64, seen: bool) -> Result<bool> {
    let side = ident.kind.side();
    // Staff delivery already recorded from this node: nothing can change.
    let known = |c: &str| state.staff_delivered.get(c).map(|v| *v).unwrap_or(0);
    if !seen && side == Side::Staff && seq <= known(&conv) {
        return Ok(false);
    }
    let (delivered, seen_seq) = if seen { (seq, seq) } else { (seq, 0) };
    let k = &state.keys;
    let call = Call::new()
        .key(k.read_state(&conv))
        .key(k.seq(&conv))
        .key(k.customer_nodes(&conv))
        .key(k.watchers(&conv))
        .arg(side.as_str())
        .arg(delivered)
        .arg(seen_seq);
    let (nd, ns, changed, targets) = match state.broker().run::<ReadReply>(&state.scripts.read, &call).await? {
        ReadReply::Ahead { current: cur } => {
            if cur == 0 && ident.is_agent() {
                ensure_conversation(state, &conv).await?;
            }
            return Err(GatewayError::invalid(format!("seq {seq} is beyond the conversation's last position {cur}")));
        }
        ReadReply::Ok { delivered, seen, changed, targets } => (delivered, seen, changed, targets),
    };
    if side == Side::Staff && nd > known(&conv) {
        // Bounded: forgetting only sends the next report to Redis.
        if state.staff_delivered.len() >= 100_000 {
            state.staff_delivered.clear();
        }
        state.staff_delivered.insert(conv.clone(), nd);
    }
    if changed {
        let ts = schema::now_ms();
        let receipt = ServerFrame::Receipt { conversation: conv.clone(), delivered_seq: nd, seen_seq: ns }.to_json();
        let audience = Audience::to_side(side.other());
        let relay = Relay { audience, conversation: Some(conv.clone()), pos: 0, frame: receipt };
        let ev = LogEvent::Read { conversation: conv.clone(), side, delivered: nd, seen: ns, ts };
        state.broker().publish(Publish { log: Some(&ev), relay: Some((&relay, &targets)) }).await?;
    }
    Ok(changed)
}


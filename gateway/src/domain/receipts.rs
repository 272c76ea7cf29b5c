//! Read receipts (`delivered`, `seen`): monotonic state per side, relayed
//! live to the other side and logged for the worker, never positioned
//! (docs/architecture.md, "Receipts do not take a position").

use redis_conn::Call;
use schema::envelope::{Audience, LogEvent, Relay};
use schema::frames::{ServerFrame, Side};

use super::conversations::repair_conversation;
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
    let call = Call::new().key(k.read_state(&conv)).key(k.state(&conv)).arg(side.as_str()).arg(delivered).arg(seen_seq);
    let mut reply = state.broker().run::<ReadReply>(&state.scripts.read, &call).await?;
    if matches!(reply, ReadReply::Ahead { current: 0 }) {
        // Redis has no state for the conversation (lost, or expired while
        // idle): seed it from the record and try once more.
        repair_conversation(state, &conv).await?;
        reply = state.broker().run::<ReadReply>(&state.scripts.read, &call).await?;
    }
    let (nd, ns, changed) = match reply {
        ReadReply::Ahead { current: cur } => {
            return Err(GatewayError::invalid(format!("seq {seq} is beyond the conversation's last position {cur}")));
        }
        ReadReply::Ok { delivered, seen, changed } => (delivered, seen, changed),
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
        state.broker().publish(Publish { log: Some(&ev), relay: Some(&relay) }).await?;
    }
    Ok(changed)
}


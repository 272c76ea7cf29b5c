//! The customer panel's data as it crosses process boundaries: points ledger
//! entries and outcomes (inside the loyalty request/reply envelopes and in
//! REST bodies), vouchers, orders and the order progress card.
//!
//! Types that travel in bincode envelopes ([`LedgerEntry`], [`PointsAction`],
//! [`PointsOutcome`], [`Actor`]) write every field (no `skip_serializing_if`)
//! and use no `serde_json::Value`: bincode can neither skip nor self-describe.

use serde::{Deserialize, Serialize};

/// Largest points amount the store accepts in one action, whatever the
/// configured per-action maximum (`CHAT_MAX_POINTS`) says: keeps every sum
/// far from `i64` overflow.
pub const POINTS_HARD_MAX: i64 = 1_000_000_000;
/// Longest reason attached to a points action, in characters.
pub const MAX_REASON_CHARS: usize = 200;
/// Longest idempotency key, in bytes (visible ASCII only).
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
/// Most items one order may list.
pub const MAX_ORDER_ITEMS: usize = 100;

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// Points from a purchase.
    Earned,
    /// Points redeemed.
    Spent,
    /// Points given by an agent.
    Awarded,
    /// The correcting entry of a balance reset (minus the balance).
    Reset,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Earned => "earned",
            LedgerKind::Spent => "spent",
            LedgerKind::Awarded => "awarded",
            LedgerKind::Reset => "reset",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "earned" => LedgerKind::Earned,
            "spent" => LedgerKind::Spent,
            "awarded" => LedgerKind::Awarded,
            "reset" => LedgerKind::Reset,
            _ => return None,
        })
    }
}

/// Who did a points action: an agent, or a system process (`id` "system").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

impl Actor {
    /// The name a system message shows: display name, else username.
    pub fn shown_name(&self) -> &str {
        match self.display_name.as_deref() {
            Some(d) if !d.trim().is_empty() => d,
            _ => &self.username,
        }
    }
}

/// One entry of a customer's append-only points ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Stable id of the entry (`<customer>:<seq>` in the SQL store).
    pub id: String,
    /// Position in the customer's ledger: 1, 2, 3... (cursor of the
    /// transactions page, and the balance's version after this entry).
    pub seq: u64,
    pub kind: LedgerKind,
    /// Signed: positive for earned/awarded, negative for spent/reset.
    pub amount: i64,
    pub balance_after: i64,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub by: Option<Actor>,
    /// Milliseconds since the epoch.
    pub ts: i64,
}

/// A points action. The console sends only `Award` and `Reset`; `Earn` and
/// `Spend` exist for purchases (and the dev seed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PointsAction {
    Award { amount: i64, reason: Option<String> },
    Reset,
    Earn { amount: i64, reason: Option<String> },
    Spend { amount: i64, reason: Option<String> },
}

impl PointsAction {
    pub fn kind(&self) -> LedgerKind {
        match self {
            PointsAction::Award { .. } => LedgerKind::Awarded,
            PointsAction::Reset => LedgerKind::Reset,
            PointsAction::Earn { .. } => LedgerKind::Earned,
            PointsAction::Spend { .. } => LedgerKind::Spent,
        }
    }
    /// The requested amount (positive), `None` for a reset.
    pub fn amount(&self) -> Option<i64> {
        match self {
            PointsAction::Award { amount, .. }
            | PointsAction::Earn { amount, .. }
            | PointsAction::Spend { amount, .. } => Some(*amount),
            PointsAction::Reset => None,
        }
    }
    pub fn reason(&self) -> Option<&str> {
        match self {
            PointsAction::Award { reason, .. }
            | PointsAction::Earn { reason, .. }
            | PointsAction::Spend { reason, .. } => reason.as_deref(),
            PointsAction::Reset => None,
        }
    }
}

/// A points action to execute exactly once per idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsCommand {
    pub customer: String,
    pub idempotency_key: String,
    pub action: PointsAction,
    pub by: Option<Actor>,
    pub ts: i64,
}

/// What a points action did. A repeat of the same idempotency key returns
/// the stored outcome with `replayed: true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsOutcome {
    pub balance: i64,
    /// Number of ledger entries after the action: grows with every change,
    /// so a client keeps the `points` frame with the highest version.
    pub version: u64,
    /// The new ledger entry; `None` for a no-op (reset of a zero balance).
    pub transaction: Option<LedgerEntry>,
    /// Nothing changed (reset of a zero balance).
    pub noop: bool,
    /// This key was executed before; this is that execution's outcome.
    #[serde(default)]
    pub replayed: bool,
}

/// A customer's balance and its version (ledger length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Balance {
    pub balance: i64,
    pub version: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoucherState {
    Active,
    Redeemed,
    Expired,
}

impl VoucherState {
    pub fn as_str(self) -> &'static str {
        match self {
            VoucherState::Active => "active",
            VoucherState::Redeemed => "redeemed",
            VoucherState::Expired => "expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => VoucherState::Active,
            "redeemed" => VoucherState::Redeemed,
            "expired" => VoucherState::Expired,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    pub id: String,
    pub title: String,
    pub code: String,
    /// Milliseconds since the epoch; `None`: never expires.
    #[serde(default)]
    pub expires_at: Option<i64>,
    pub state: VoucherState,
}

impl Voucher {
    /// Active and not past its expiry at `now_ms`.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.state == VoucherState::Active && self.expires_at.is_none_or(|e| e > now_ms)
    }
}

// ------------------------------------------------------------------ orders

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    Accepted,
    Preparing,
    Ready,
    Completed,
    Cancelled,
}

impl OrderStatus {
    /// The normal progression a card shows as steps.
    pub const STEPS: [OrderStatus; 5] = [
        OrderStatus::Placed,
        OrderStatus::Accepted,
        OrderStatus::Preparing,
        OrderStatus::Ready,
        OrderStatus::Completed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Accepted => "accepted",
            OrderStatus::Preparing => "preparing",
            OrderStatus::Ready => "ready",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "placed" => OrderStatus::Placed,
            "accepted" => OrderStatus::Accepted,
            "preparing" => OrderStatus::Preparing,
            "ready" => OrderStatus::Ready,
            "completed" => OrderStatus::Completed,
            "cancelled" => OrderStatus::Cancelled,
            _ => return None,
        })
    }
    /// Tie-breaker between two events with the same `ts`: the later stage
    /// wins, so the outcome does not depend on arrival order.
    pub fn rank(self) -> i64 {
        match self {
            OrderStatus::Placed => 0,
            OrderStatus::Accepted => 1,
            OrderStatus::Preparing => 2,
            OrderStatus::Ready => 3,
            OrderStatus::Completed => 4,
            OrderStatus::Cancelled => 5,
        }
    }
    /// Completed or cancelled: the order is over ("recent", not "active").
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Completed | OrderStatus::Cancelled)
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderItem {
    pub name: String,
    pub qty: u32,
    /// Unit price in the order's currency (as the order system sent it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<serde_json::Number>,
}

/// A status the order went through, at the order system's `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub status: OrderStatus,
    pub ts: i64,
}

/// An order as the panel shows it (`GET /api/customers/{id}/orders`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    pub total: serde_json::Number,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Every status seen, ordered by `ts` (events may arrive out of order).
    pub history: Vec<StatusChange>,
    /// `ts` of the earliest event.
    pub placed_at: i64,
    /// `ts` of the event that set the current status.
    pub updated_at: i64,
}

/// The state of one step on a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Done,
    Current,
    Todo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStep {
    pub status: OrderStatus,
    pub state: StepState,
}

/// The `order` field of an order message (kind `order`) and of the `order`
/// frame that updates it in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCard {
    pub id: String,
    pub status: OrderStatus,
    pub steps: Vec<OrderStep>,
    pub items: Vec<OrderItem>,
    pub total: serde_json::Number,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    pub updated_at: i64,
}

impl Order {
    /// The card for the current state. A function of the current status
    /// only (not of the history), so a late old event never changes it.
    pub fn card(&self) -> OrderCard {
        let steps = if self.status == OrderStatus::Cancelled {
            vec![
                OrderStep { status: OrderStatus::Placed, state: StepState::Done },
                OrderStep { status: OrderStatus::Cancelled, state: StepState::Current },
            ]
        } else {
            let at = self.status.rank();
            OrderStatus::STEPS
                .iter()
                .map(|s| OrderStep {
                    status: *s,
                    state: match s.rank().cmp(&at) {
                        std::cmp::Ordering::Less => StepState::Done,
                        std::cmp::Ordering::Equal => StepState::Current,
                        std::cmp::Ordering::Greater => StepState::Todo,
                    },
                })
                .collect()
        };
        OrderCard {
            id: self.id.clone(),
            status: self.status,
            steps,
            items: self.items.clone(),
            total: self.total.clone(),
            currency: self.currency.clone(),
            updated_at: self.updated_at,
        }
    }
}

/// One event from the order system (`POST /api/orders/events`), validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub order_id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    pub total: serde_json::Number,
    #[serde(default)]
    pub currency: Option<String>,
    pub ts: i64,
}

/// Which orders a panel section lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderFilter {
    /// Not completed or cancelled yet.
    Active,
    /// Completed or cancelled, newest first.
    Recent,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus) -> Order {
        Order {
            id: "1".into(),
            customer_id: "c".into(),
            status,
            items: vec![],
            total: serde_json::Number::from(0),
            currency: None,
            history: vec![],
            placed_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn card_steps() {
        let c = order(OrderStatus::Preparing).card();
        let states: Vec<_> = c.steps.iter().map(|s| s.state).collect();
        assert_eq!(states, [StepState::Done, StepState::Done, StepState::Current, StepState::Todo, StepState::Todo]);
        let c = order(OrderStatus::Cancelled).card();
        assert_eq!(c.steps.len(), 2);
        let j = serde_json::to_value(order(OrderStatus::Ready).card()).unwrap();
        assert_eq!(j["steps"][3]["state"], "current");
        assert_eq!(j["status"], "ready");
    }

    #[test]
    fn outcome_round_trips_in_an_envelope() {
        let o = PointsOutcome {
            balance: 10,
            version: 2,
            transaction: Some(LedgerEntry {
                id: "c:2".into(),
                seq: 2,
                kind: LedgerKind::Awarded,
                amount: 10,
                balance_after: 10,
                reason: None,
                by: Some(Actor { id: "a".into(), username: "ann".into(), display_name: None }),
                ts: 5,
            }),
            noop: false,
            replayed: false,
        };
        let b = crate::envelope::encode(&o);
        assert_eq!(crate::envelope::decode::<PointsOutcome>(&b).unwrap(), o);
    }
}

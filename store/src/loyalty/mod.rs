//! The loyalty store: points ledger, balance, vouchers and orders behind one
//! trait ([`LoyaltyStore`]), with two implementations:
//!
//! - [`SqlLoyalty`] (default): tables in the same database as the history.
//! - [`HttpLoyalty`]: a client of an external loyalty service (its JSON
//!   contract is `docs/loyalty-service.md`) for the points ledger and the
//!   vouchers. Orders are pushed to the chat by the order system
//!   (`POST /api/orders/events`) and the order cards' bookkeeping belongs to
//!   the chat, so both implementations keep orders in the chat's database.
//!
//! Every points action carries an idempotency key: executing a key again
//! returns the first execution's outcome (`replayed`), and the same key with
//! a different request is a [`LoyaltyError::Conflict`].

mod http;
mod sql;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use schema::loyalty::{
    Balance, LedgerEntry, Order, OrderEvent, OrderFilter, OrderStatus, PointsCommand, PointsOutcome, Voucher,
    MAX_IDEMPOTENCY_KEY, MAX_REASON_CHARS, POINTS_HARD_MAX,
};

pub use http::{HttpLoyalty, PointsRequestBody, TransactionsBody, VouchersBody};
pub use sql::SqlLoyalty;

use crate::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LoyaltyError {
    /// The idempotency key was used for a different request (or an order
    /// event names another customer than the order's).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The external loyalty service cannot be reached or failed.
    #[error("loyalty service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for LoyaltyError {
    fn from(e: sqlx::Error) -> Self {
        LoyaltyError::Store(StoreError::Db(e))
    }
}

pub type LoyaltyResult<T> = std::result::Result<T, LoyaltyError>;
/// The future every trait method returns (boxed: the trait is used as `dyn`).
pub type LoyaltyFuture<'a, T> = Pin<Box<dyn Future<Output = LoyaltyResult<T>> + Send + 'a>>;
/// What gateway and worker hold.
pub type SharedLoyalty = Arc<dyn LoyaltyStore>;

/// One page of a customer's ledger, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LedgerPage {
    pub items: Vec<LedgerEntry>,
    /// Older entries exist (pass the last item's `seq` as `before`).
    pub has_more: bool,
}

/// Which state an order's card shows (`seq` 0: no card posted yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardState {
    pub seq: u64,
    pub status: Option<OrderStatus>,
    pub ts: i64,
}

/// What recording one order event did.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderOutcome {
    /// The order after the event.
    pub order: Order,
    pub card: CardState,
    /// The first event of this order.
    pub created: bool,
    /// This (status, ts) was already recorded: nothing changed.
    pub repeated: bool,
    /// The event became the current state (newer than the previous one).
    pub current_changed: bool,
}

impl OrderOutcome {
    /// The card is missing or shows an older state than the current one.
    pub fn card_stale(&self) -> bool {
        self.card.seq == 0 || self.card.status != Some(self.order.status) || self.card.ts != self.order.updated_at
    }
}

/// The loyalty store. Methods return boxed futures so the trait can be a
/// `dyn` object chosen at start-up from configuration.
pub trait LoyaltyStore: Send + Sync {
    /// `"sql"` or `"http"` (logs, readiness).
    fn backend(&self) -> &'static str;
    /// Current balance (0, version 0 for a customer without a ledger).
    fn balance<'a>(&'a self, customer: &'a str) -> LoyaltyFuture<'a, Balance>;
    /// Ledger entries with `seq < before` (newest when `None`), newest first.
    fn transactions<'a>(
        &'a self,
        customer: &'a str,
        before: Option<u64>,
        limit: usize,
    ) -> LoyaltyFuture<'a, LedgerPage>;
    /// Executes a points action once per idempotency key (see the module doc).
    fn apply<'a>(&'a self, cmd: &'a PointsCommand) -> LoyaltyFuture<'a, PointsOutcome>;
    /// Active vouchers (state active, not expired), soonest expiry first.
    fn vouchers<'a>(&'a self, customer: &'a str) -> LoyaltyFuture<'a, Vec<Voucher>>;
    /// Creates or replaces a voucher (issuing is the loyalty program's job;
    /// the chat uses this for demo data).
    fn put_voucher<'a>(&'a self, customer: &'a str, voucher: &'a Voucher) -> LoyaltyFuture<'a, ()>;
    /// Records an order event in one transaction: the newest `(ts, status)`
    /// becomes current, every status joins the history, a repeat is a no-op.
    fn apply_order_event<'a>(&'a self, ev: &'a OrderEvent) -> LoyaltyFuture<'a, OrderOutcome>;
    /// Records which message shows the order and which state it shows.
    fn mark_order_card<'a>(&'a self, order_id: &'a str, card: CardState) -> LoyaltyFuture<'a, ()>;
    /// A customer's orders in one panel section, newest first.
    fn orders<'a>(&'a self, customer: &'a str, filter: OrderFilter, limit: usize) -> LoyaltyFuture<'a, Vec<Order>>;
    fn order<'a>(&'a self, order_id: &'a str) -> LoyaltyFuture<'a, Option<Order>>;
}

/// How to reach the external loyalty service.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base URL, e.g. `http://loyalty.internal:8090/v1`.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Per request; keep it under the gateway's wait for a points action.
    pub timeout: Duration,
}

/// The loyalty store configuration names: the HTTP client when `http` is
/// given, else the SQL store on `store`'s database.
pub fn open(store: &Store, http: Option<HttpConfig>) -> LoyaltyResult<SharedLoyalty> {
    Ok(match http {
        Some(cfg) => Arc::new(HttpLoyalty::new(cfg, store.loyalty())?),
        None => Arc::new(store.loyalty()),
    })
}

/// Checks a command before any backend sees it (both implementations and
/// the gateway agree on these rules).
pub fn validate_command(cmd: &PointsCommand) -> LoyaltyResult<()> {
    let k = &cmd.idempotency_key;
    if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(LoyaltyError::Invalid(format!(
            "idempotency key: 1..{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    if !schema::ids::valid_id(&cmd.customer) {
        return Err(LoyaltyError::Invalid("not a valid customer id".into()));
    }
    if let Some(a) = cmd.action.amount() {
        if !(1..=POINTS_HARD_MAX).contains(&a) {
            return Err(LoyaltyError::Invalid(format!("amount must be a whole number from 1 to {POINTS_HARD_MAX}")));
        }
    }
    if let Some(r) = cmd.action.reason() {
        if r.chars().count() > MAX_REASON_CHARS {
            return Err(LoyaltyError::Invalid(format!("reason: at most {MAX_REASON_CHARS} characters")));
        }
    }
    Ok(())
}

/// Whose idempotency keys a command's key is among: the agent's id (`""`
/// for an action without an actor). Keys are scoped per agent, so one
/// agent's key can neither replay nor block another agent's action.
pub fn key_owner(cmd: &PointsCommand) -> &str {
    cmd.by.as_ref().map(|a| a.id.as_str()).unwrap_or("")
}

/// The key as an external service sees it: `<agent id>/<key>` (one flat
/// key space there, scoped per agent like the SQL store's).
pub fn scoped_key(cmd: &PointsCommand) -> String {
    format!("{}/{}", key_owner(cmd), cmd.idempotency_key)
}

/// What a command asks for (and who asks), to tell a repeat of an
/// idempotency key from a different request under the same key.
pub fn fingerprint(cmd: &PointsCommand) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}",
        key_owner(cmd),
        cmd.customer,
        cmd.action.kind().as_str(),
        cmd.action.amount().map(|a| a.to_string()).unwrap_or_default(),
        cmd.action.reason().unwrap_or("")
    )
}

impl Store {
    /// The SQL loyalty store on this database.
    pub fn loyalty(&self) -> SqlLoyalty {
        SqlLoyalty::new(self.pool.clone(), self.backend)
    }
}

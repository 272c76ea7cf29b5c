//! The SQL loyalty store: same database and driver rules as the history
//! (sqlx `Any`, `$n` placeholders, `TEXT`/`BIGINT` only).
//!
//! A points action is one transaction: claim the idempotency key (insert, or
//! find the earlier execution), lock the customer's account row, append the
//! ledger entry, move the balance, store the outcome. On PostgreSQL the
//! account row's lock serialises actions on one customer and the key's unique
//! index makes a concurrent repeat wait for the first execution to commit; on
//! SQLite `BEGIN IMMEDIATE` serialises all writers.

use schema::loyalty::{
    Actor, Balance, LedgerEntry, LedgerKind, Order, OrderEvent, OrderFilter, OrderItem, OrderStatus, PointsAction,
    PointsCommand, PointsOutcome, StatusChange, Voucher, VoucherState, MAX_ORDER_ITEMS,
};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::{
    fingerprint, key_owner, validate_command, CardState, LedgerPage, LoyaltyError, LoyaltyFuture, LoyaltyResult, LoyaltyStore,
    OrderOutcome,
};
use crate::persist::to_i64;
use crate::Backend;

#[derive(Clone)]
pub struct SqlLoyalty {
    pool: AnyPool,
    backend: Backend,
}

/// PostgreSQL rejects NUL in text; strip it on both backends so they agree.
fn clean(s: &str) -> String {
    s.replace('\0', "")
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const LEDGER_COLUMNS: &str =
    "customer_id, seq, kind, amount, balance_after, reason, by_id, by_username, by_display_name, ts";

fn entry_from_row(r: &AnyRow) -> LoyaltyResult<LedgerEntry> {
    let customer: String = r.try_get("customer_id")?;
    let seq: i64 = r.try_get("seq")?;
    let kind: String = r.try_get("kind")?;
    let by_id: Option<String> = r.try_get("by_id")?;
    let by_username: Option<String> = r.try_get("by_username")?;
    Ok(LedgerEntry {
        id: format!("{customer}:{seq}"),
        seq: u(seq),
        kind: LedgerKind::parse(&kind)
            .ok_or_else(|| LoyaltyError::Invalid(format!("ledger entry {customer}:{seq} has unknown kind {kind:?}")))?,
        amount: r.try_get("amount")?,
        balance_after: r.try_get("balance_after")?,
        reason: r.try_get("reason")?,
        by: match (by_id, by_username) {
            (Some(id), Some(username)) => Some(Actor { id, username, display_name: r.try_get("by_display_name")? }),
            _ => None,
        },
        ts: r.try_get("ts")?,
    })
}

const ORDER_COLUMNS: &str =
    "id, customer_id, status, status_ts, status_rank, items_json, total, currency, history_json,
    placed_at, card_seq, card_status, card_ts";

/// An order row, as stored.
struct OrderRow {
    order: Order,
    rank: i64,
    card: CardState,
}

fn order_from_row(r: &AnyRow) -> LoyaltyResult<OrderRow> {
    let id: String = r.try_get("id")?;
    let bad = |what: &str| LoyaltyError::Invalid(format!("order {id}: unreadable {what}"));
    let status: String = r.try_get("status")?;
    let items: String = r.try_get("items_json")?;
    let total: String = r.try_get("total")?;
    let history: String = r.try_get("history_json")?;
    let card_status: String = r.try_get("card_status")?;
    let order = Order {
        customer_id: r.try_get("customer_id")?,
        status: OrderStatus::parse(&status).ok_or_else(|| bad("status"))?,
        items: serde_json::from_str::<Vec<OrderItem>>(&items).map_err(|_| bad("items"))?,
        total: serde_json::from_str::<serde_json::Number>(&total).map_err(|_| bad("total"))?,
        currency: r.try_get("currency")?,
        history: serde_json::from_str::<Vec<StatusChange>>(&history).map_err(|_| bad("history"))?,
        placed_at: r.try_get("placed_at")?,
        updated_at: r.try_get("status_ts")?,
        id: id.clone(),
    };
    Ok(OrderRow {
        order,
        rank: r.try_get("status_rank")?,
        card: CardState {
            seq: u(r.try_get("card_seq")?),
            status: OrderStatus::parse(&card_status),
            ts: r.try_get("card_ts")?,
        },
    })
}

fn json<T: serde::Serialize>(v: &T) -> LoyaltyResult<String> {
    serde_json::to_string(v).map_err(|e| LoyaltyError::Invalid(format!("cannot encode: {e}")))
}

/// Checks an order event (the gateway checks the same before it gets here).
pub fn validate_order_event(ev: &OrderEvent) -> LoyaltyResult<()> {
    if !schema::ids::valid_id(&ev.order_id) {
        return Err(LoyaltyError::Invalid("order_id: 1..64 of letters, digits, `_`, `-`, `.`".into()));
    }
    if !schema::ids::valid_id(&ev.customer_id) {
        return Err(LoyaltyError::Invalid("customer_id is not a valid id".into()));
    }
    if ev.items.len() > MAX_ORDER_ITEMS {
        return Err(LoyaltyError::Invalid(format!("items: at most {MAX_ORDER_ITEMS}")));
    }
    if ev.ts <= 0 {
        return Err(LoyaltyError::Invalid("ts: milliseconds since the epoch".into()));
    }
    Ok(())
}

impl SqlLoyalty {
    pub(crate) fn new(pool: AnyPool, backend: Backend) -> Self {
        Self { pool, backend }
    }

    async fn begin(&self) -> LoyaltyResult<sqlx::Transaction<'static, sqlx::Any>> {
        // SQLite: take the write lock up front; a deferred transaction that
        // reads first can fail with SQLITE_BUSY instead of waiting.
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    async fn apply_inner(&self, cmd: &PointsCommand) -> LoyaltyResult<PointsOutcome> {
        validate_command(cmd)?;
        let fp = fingerprint(cmd);
        let mut tx = self.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO loyalty_agent_requests (agent_id, idempotency_key, customer_id, fingerprint, outcome_json, created_at)
             VALUES ($5, $1, $2, $3, '', $4) ON CONFLICT (agent_id, idempotency_key) DO NOTHING",
        )
        .bind(&cmd.idempotency_key)
        .bind(&cmd.customer)
        .bind(&fp)
        .bind(schema::now_ms())
        .bind(key_owner(cmd))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            // Executed before (and committed: on PostgreSQL the insert above
            // waited for a concurrent first execution to finish).
            let row = sqlx::query("SELECT fingerprint, outcome_json FROM loyalty_agent_requests WHERE agent_id = $1 AND idempotency_key = $2")
                .bind(key_owner(cmd))
                .bind(&cmd.idempotency_key)
                .fetch_one(&mut *tx)
                .await?;
            tx.rollback().await?;
            let stored_fp: String = row.try_get("fingerprint")?;
            if stored_fp != fp {
                return Err(LoyaltyError::Conflict(
                    "this Idempotency-Key was already used for a different request".into(),
                ));
            }
            let outcome: String = row.try_get("outcome_json")?;
            let mut o: PointsOutcome = serde_json::from_str(&outcome)
                .map_err(|_| LoyaltyError::Invalid("stored outcome of this Idempotency-Key is unreadable".into()))?;
            o.replayed = true;
            return Ok(o);
        }

        sqlx::query("INSERT INTO loyalty_accounts (customer_id, balance, entries) VALUES ($1, 0, 0) ON CONFLICT (customer_id) DO NOTHING")
            .bind(&cmd.customer)
            .execute(&mut *tx)
            .await?;
        // A no-op update: takes the row lock (PostgreSQL) and reads the
        // balance as of the lock, so concurrent actions queue here.
        let acc = sqlx::query(
            "UPDATE loyalty_accounts SET entries = entries WHERE customer_id = $1 RETURNING balance, entries",
        )
        .bind(&cmd.customer)
        .fetch_one(&mut *tx)
        .await?;
        let balance: i64 = acc.try_get("balance")?;
        let entries: i64 = acc.try_get("entries")?;
        let delta = match &cmd.action {
            PointsAction::Award { amount, .. } | PointsAction::Earn { amount, .. } => *amount,
            PointsAction::Spend { amount, .. } => -*amount,
            PointsAction::Reset => -balance,
        };
        let outcome = if delta == 0 {
            // Only a reset of a zero balance: nothing to correct, no entry.
            PointsOutcome { balance, version: u(entries), transaction: None, noop: true, replayed: false }
        } else {
            let new_balance =
                balance.checked_add(delta).ok_or_else(|| LoyaltyError::Invalid("the balance would overflow".into()))?;
            if new_balance < 0 {
                tx.rollback().await?;
                return Err(LoyaltyError::Invalid(format!("the balance is {balance}: cannot spend {}", -delta)));
            }
            let seq = entries + 1;
            let reason = cmd.action.reason().map(clean);
            let entry = LedgerEntry {
                id: format!("{}:{seq}", cmd.customer),
                seq: u(seq),
                kind: cmd.action.kind(),
                amount: delta,
                balance_after: new_balance,
                reason: reason.clone(),
                by: cmd.by.clone(),
                ts: cmd.ts,
            };
            let by = cmd.by.as_ref();
            sqlx::query(&format!(
                "INSERT INTO loyalty_ledger ({LEDGER_COLUMNS}, idempotency_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ))
            .bind(&cmd.customer)
            .bind(seq)
            .bind(entry.kind.as_str())
            .bind(delta)
            .bind(new_balance)
            .bind(reason.as_deref())
            .bind(by.map(|b| clean(&b.id)))
            .bind(by.map(|b| clean(&b.username)))
            .bind(by.and_then(|b| b.display_name.as_deref()).map(clean))
            .bind(cmd.ts)
            .bind(&cmd.idempotency_key)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE loyalty_accounts SET balance = $1, entries = $2 WHERE customer_id = $3")
                .bind(new_balance)
                .bind(seq)
                .bind(&cmd.customer)
                .execute(&mut *tx)
                .await?;
            PointsOutcome {
                balance: new_balance,
                version: u(seq),
                transaction: Some(entry),
                noop: false,
                replayed: false,
            }
        };
        sqlx::query("UPDATE loyalty_agent_requests SET outcome_json = $1 WHERE agent_id = $2 AND idempotency_key = $3")
            .bind(json(&outcome)?)
            .bind(key_owner(cmd))
            .bind(&cmd.idempotency_key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn apply_order_inner(&self, ev: &OrderEvent) -> LoyaltyResult<OrderOutcome> {
        validate_order_event(ev)?;
        let items = json(&ev.items)?;
        let total = json(&ev.total)?;
        let mut tx = self.begin().await?;
        let history = json(&vec![StatusChange { status: ev.status, ts: ev.ts }])?;
        let created = sqlx::query(
            "INSERT INTO orders (id, customer_id, status, status_ts, status_rank, items_json, total, currency, history_json,
                placed_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $4, $10) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ev.order_id)
        .bind(&ev.customer_id)
        .bind(ev.status.as_str())
        .bind(ev.ts)
        .bind(ev.status.rank())
        .bind(&items)
        .bind(&total)
        .bind(ev.currency.as_deref().map(clean))
        .bind(&history)
        .bind(schema::now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        // Locks the row (PostgreSQL) and reads it as of the lock.
        let row = sqlx::query(&format!("UPDATE orders SET id = id WHERE id = $1 RETURNING {ORDER_COLUMNS}"))
            .bind(&ev.order_id)
            .fetch_one(&mut *tx)
            .await?;
        let mut cur = order_from_row(&row)?;
        if created {
            tx.commit().await?;
            return Ok(OrderOutcome {
                order: cur.order,
                card: cur.card,
                created: true,
                repeated: false,
                current_changed: true,
            });
        }
        if cur.order.customer_id != ev.customer_id {
            tx.rollback().await?;
            return Err(LoyaltyError::Conflict(format!("order {} belongs to another customer", ev.order_id)));
        }
        let change = StatusChange { status: ev.status, ts: ev.ts };
        if cur.order.history.contains(&change) {
            tx.rollback().await?;
            return Ok(OrderOutcome {
                order: cur.order,
                card: cur.card,
                created: false,
                repeated: true,
                current_changed: false,
            });
        }
        cur.order.history.push(change);
        cur.order.history.sort_by_key(|c| (c.ts, c.status.rank()));
        let newer = (ev.ts, ev.status.rank()) > (cur.order.updated_at, cur.rank);
        if newer {
            cur.order.status = ev.status;
            cur.order.updated_at = ev.ts;
            cur.order.items = ev.items.clone();
            cur.order.total = ev.total.clone();
            cur.order.currency = ev.currency.as_deref().map(clean);
        }
        cur.order.placed_at = cur.order.placed_at.min(ev.ts);
        sqlx::query(
            "UPDATE orders SET status = $1, status_ts = $2, status_rank = $3, items_json = $4, total = $5, currency = $6,
                history_json = $7, placed_at = $8 WHERE id = $9",
        )
        .bind(cur.order.status.as_str())
        .bind(cur.order.updated_at)
        .bind(cur.order.status.rank())
        .bind(json(&cur.order.items)?)
        .bind(json(&cur.order.total)?)
        .bind(cur.order.currency.as_deref())
        .bind(json(&cur.order.history)?)
        .bind(cur.order.placed_at)
        .bind(&ev.order_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(OrderOutcome { order: cur.order, card: cur.card, created: false, repeated: false, current_changed: newer })
    }
}

impl LoyaltyStore for SqlLoyalty {
    fn backend(&self) -> &'static str {
        "sql"
    }

    fn balance<'a>(&'a self, customer: &'a str) -> LoyaltyFuture<'a, Balance> {
        Box::pin(async move {
            let row = sqlx::query("SELECT balance, entries FROM loyalty_accounts WHERE customer_id = $1")
                .bind(customer)
                .fetch_optional(&self.pool)
                .await?;
            Ok(match row {
                Some(r) => Balance { balance: r.try_get("balance")?, version: u(r.try_get("entries")?) },
                None => Balance::default(),
            })
        })
    }

    fn transactions<'a>(
        &'a self,
        customer: &'a str,
        before: Option<u64>,
        limit: usize,
    ) -> LoyaltyFuture<'a, LedgerPage> {
        Box::pin(async move {
            let limit = limit.clamp(1, schema::limits::MAX_PAGE);
            let rows = sqlx::query(&format!(
                "SELECT {LEDGER_COLUMNS} FROM loyalty_ledger WHERE customer_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
            ))
            .bind(customer)
            .bind(before.map(to_i64).unwrap_or(i64::MAX))
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
            let has_more = rows.len() > limit;
            let items = rows.iter().take(limit).map(entry_from_row).collect::<LoyaltyResult<Vec<_>>>()?;
            Ok(LedgerPage { items, has_more })
        })
    }

    fn apply<'a>(&'a self, cmd: &'a PointsCommand) -> LoyaltyFuture<'a, PointsOutcome> {
        Box::pin(self.apply_inner(cmd))
    }

    fn vouchers<'a>(&'a self, customer: &'a str) -> LoyaltyFuture<'a, Vec<Voucher>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT id, title, code, expires_at, state FROM vouchers
                 WHERE customer_id = $1 AND state = 'active' AND (expires_at IS NULL OR expires_at > $2)
                 ORDER BY CASE WHEN expires_at IS NULL THEN 1 ELSE 0 END, expires_at, id",
            )
            .bind(customer)
            .bind(schema::now_ms())
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    let state: String = r.try_get("state")?;
                    Ok(Voucher {
                        id: r.try_get("id")?,
                        title: r.try_get("title")?,
                        code: r.try_get("code")?,
                        expires_at: r.try_get("expires_at")?,
                        state: VoucherState::parse(&state).unwrap_or(VoucherState::Expired),
                    })
                })
                .collect()
        })
    }

    fn put_voucher<'a>(&'a self, customer: &'a str, v: &'a Voucher) -> LoyaltyFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO vouchers (id, customer_id, title, code, expires_at, state, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (id) DO UPDATE SET customer_id = excluded.customer_id, title = excluded.title,
                    code = excluded.code, expires_at = excluded.expires_at, state = excluded.state",
            )
            .bind(clean(&v.id))
            .bind(customer)
            .bind(clean(&v.title))
            .bind(clean(&v.code))
            .bind(v.expires_at)
            .bind(v.state.as_str())
            .bind(schema::now_ms())
            .execute(&self.pool)
            .await?;
            Ok(())
        })
    }

    fn apply_order_event<'a>(&'a self, ev: &'a OrderEvent) -> LoyaltyFuture<'a, OrderOutcome> {
        Box::pin(self.apply_order_inner(ev))
    }

    fn mark_order_card<'a>(&'a self, order_id: &'a str, card: CardState) -> LoyaltyFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query("UPDATE orders SET card_seq = $1, card_status = $2, card_ts = $3 WHERE id = $4")
                .bind(to_i64(card.seq))
                .bind(card.status.map(|s| s.as_str()).unwrap_or(""))
                .bind(card.ts)
                .bind(order_id)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }

    fn orders<'a>(&'a self, customer: &'a str, filter: OrderFilter, limit: usize) -> LoyaltyFuture<'a, Vec<Order>> {
        Box::pin(async move {
            let statuses = match filter {
                OrderFilter::Active => "'placed', 'accepted', 'preparing', 'ready'",
                OrderFilter::Recent => "'completed', 'cancelled'",
            };
            let rows = sqlx::query(&format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE customer_id = $1 AND status IN ({statuses})
                 ORDER BY status_ts DESC, id LIMIT $2"
            ))
            .bind(customer)
            .bind(limit.clamp(1, schema::limits::MAX_PAGE) as i64)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(|r| order_from_row(r).map(|o| o.order)).collect()
        })
    }

    fn order<'a>(&'a self, order_id: &'a str) -> LoyaltyFuture<'a, Option<Order>> {
        Box::pin(async move {
            let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
                .bind(order_id)
                .fetch_optional(&self.pool)
                .await?;
            row.map(|r| order_from_row(&r).map(|o| o.order)).transpose()
        })
    }
}

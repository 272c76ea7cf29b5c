//! The client of an external loyalty service (`CHAT_LOYALTY_URL`). The JSON
//! contract is documented in `docs/loyalty-service.md`; the test suite runs
//! it against a small in-memory server (`gateway/tests/loyalty_http.rs`).
//!
//! Failure mapping: 409 -> `Conflict`, 400/422 -> `Invalid`, 404 on a write
//! -> `NotFound`; anything else (refused connection, timeout, 5xx, a body
//! that does not decode) -> `Unavailable`, which the gateway reports as 503
//! and which never produces a system message.

use schema::loyalty::{
    Balance, LedgerEntry, Order, OrderEvent, OrderFilter, PointsAction, PointsCommand, PointsOutcome, Voucher,
};
use serde::{Deserialize, Serialize};

use super::{
    validate_command, CardState, HttpConfig, LedgerPage, LoyaltyError, LoyaltyFuture, LoyaltyResult, LoyaltyStore,
    OrderOutcome, SqlLoyalty,
};

pub struct HttpLoyalty {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    /// Orders stay in the chat's database (see the module doc of `loyalty`).
    local: SqlLoyalty,
}

/// `POST /customers/{id}/points` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct PointsRequestBody {
    pub idempotency_key: String,
    /// `award`, `reset`, `earn` or `spend`.
    pub kind: String,
    /// Positive; absent for `reset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub by: Option<schema::loyalty::Actor>,
    pub ts: i64,
}

impl PointsRequestBody {
    pub fn from_command(cmd: &PointsCommand) -> Self {
        let kind = match cmd.action {
            PointsAction::Award { .. } => "award",
            PointsAction::Reset => "reset",
            PointsAction::Earn { .. } => "earn",
            PointsAction::Spend { .. } => "spend",
        };
        PointsRequestBody {
            idempotency_key: super::scoped_key(cmd),
            kind: kind.to_string(),
            amount: cmd.action.amount(),
            reason: cmd.action.reason().map(str::to_string),
            by: cmd.by.clone(),
            ts: cmd.ts,
        }
    }

    /// The action this body asks for (`None` for an unknown kind or a
    /// missing amount).
    pub fn action(&self) -> Option<PointsAction> {
        let reason = self.reason.clone();
        Some(match self.kind.as_str() {
            "award" => PointsAction::Award { amount: self.amount?, reason },
            "earn" => PointsAction::Earn { amount: self.amount?, reason },
            "spend" => PointsAction::Spend { amount: self.amount?, reason },
            "reset" => PointsAction::Reset,
            _ => return None,
        })
    }
}

/// `GET /customers/{id}/transactions` reply.
#[derive(Debug, Serialize, Deserialize)]
pub struct TransactionsBody {
    pub items: Vec<LedgerEntry>,
    #[serde(default)]
    pub has_more: bool,
}

/// `GET /customers/{id}/vouchers` reply.
#[derive(Debug, Serialize, Deserialize)]
pub struct VouchersBody {
    pub items: Vec<Voucher>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved
/// characters; `.` and `..` (which a server resolves as a path step) are
/// encoded whole.
pub fn path_segment(s: &str) -> String {
    if s == "." || s == ".." {
        return s.replace('.', "%2E");
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unavailable(e: impl std::fmt::Display) -> LoyaltyError {
    LoyaltyError::Unavailable(e.to_string())
}

impl HttpLoyalty {
    pub fn new(cfg: HttpConfig, local: SqlLoyalty) -> LoyaltyResult<Self> {
        let base = cfg.url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(LoyaltyError::Invalid(format!("loyalty service URL must be http(s)://...: {base:?}")));
        }
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .build()
            .map_err(|e| LoyaltyError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Self { base, token: cfg.token.filter(|t| !t.is_empty()), client, local })
    }

    fn url(&self, customer: &str, rest: &str) -> String {
        // Customer ids are checked at every entry point (`[A-Za-z0-9_.-]`, not
        // `.` or `..`); the segment is escaped anyway, so an id can never
        // reach another path of the service.
        format!("{}/customers/{}{rest}", self.base, path_segment(customer))
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends a request and decodes a 2xx JSON reply; maps failures as the
    /// module doc says. `not_found_ok`: a 404 means "nothing" (reads).
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        rb: reqwest::RequestBuilder,
        not_found_ok: bool,
    ) -> LoyaltyResult<Option<T>> {
        let resp = self.auth(rb).send().await.map_err(unavailable)?;
        let status = resp.status();
        if status.is_success() {
            if status == reqwest::StatusCode::NO_CONTENT {
                return Ok(None);
            }
            let bytes = resp.bytes().await.map_err(unavailable)?;
            if bytes.is_empty() {
                return Ok(None);
            }
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| unavailable(format!("the loyalty service sent an unreadable reply: {e}")));
        }
        if status == reqwest::StatusCode::NOT_FOUND && not_found_ok {
            return Ok(None);
        }
        let message = resp
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<ErrorBody>(&b).ok())
            .map(|e| e.error.message)
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("the loyalty service answered {status}"));
        Err(match status.as_u16() {
            409 => LoyaltyError::Conflict(message),
            400 | 422 => LoyaltyError::Invalid(message),
            404 => LoyaltyError::NotFound(message),
            _ => LoyaltyError::Unavailable(message),
        })
    }
}

impl LoyaltyStore for HttpLoyalty {
    fn backend(&self) -> &'static str {
        "http"
    }

    fn balance<'a>(&'a self, customer: &'a str) -> LoyaltyFuture<'a, Balance> {
        Box::pin(async move {
            let b: Option<Balance> = self.call(self.client.get(self.url(customer, "/balance")), true).await?;
            Ok(b.unwrap_or_default())
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
            let mut q = vec![("limit", limit.to_string())];
            if let Some(b) = before {
                q.push(("before", b.to_string()));
            }
            let body: Option<TransactionsBody> =
                self.call(self.client.get(self.url(customer, "/transactions")).query(&q), true).await?;
            Ok(match body {
                Some(mut b) => {
                    // Never trust a peer to honour the page size.
                    let more = b.items.len() > limit;
                    b.items.truncate(limit);
                    LedgerPage { items: b.items, has_more: b.has_more || more }
                }
                None => LedgerPage::default(),
            })
        })
    }

    fn apply<'a>(&'a self, cmd: &'a PointsCommand) -> LoyaltyFuture<'a, PointsOutcome> {
        Box::pin(async move {
            validate_command(cmd)?;
            let body = PointsRequestBody::from_command(cmd);
            let out: Option<PointsOutcome> =
                self.call(self.client.post(self.url(&cmd.customer, "/points")).json(&body), false).await?;
            out.ok_or_else(|| unavailable("the loyalty service sent no outcome"))
        })
    }

    fn vouchers<'a>(&'a self, customer: &'a str) -> LoyaltyFuture<'a, Vec<Voucher>> {
        Box::pin(async move {
            let body: Option<VouchersBody> = self.call(self.client.get(self.url(customer, "/vouchers")), true).await?;
            let now = schema::now_ms();
            let mut items: Vec<Voucher> =
                body.map(|b| b.items).unwrap_or_default().into_iter().filter(|v| v.is_active(now)).collect();
            items.sort_by_key(|v| (v.expires_at.is_none(), v.expires_at, v.id.clone()));
            Ok(items)
        })
    }

    fn put_voucher<'a>(&'a self, customer: &'a str, voucher: &'a Voucher) -> LoyaltyFuture<'a, ()> {
        Box::pin(async move {
            let url = self.url(customer, &format!("/vouchers/{}", path_segment(&voucher.id)));
            let _: Option<serde_json::Value> = self.call(self.client.put(url).json(voucher), false).await?;
            Ok(())
        })
    }

    fn apply_order_event<'a>(&'a self, ev: &'a OrderEvent) -> LoyaltyFuture<'a, OrderOutcome> {
        self.local.apply_order_event(ev)
    }

    fn mark_order_card<'a>(&'a self, order_id: &'a str, card: CardState) -> LoyaltyFuture<'a, ()> {
        self.local.mark_order_card(order_id, card)
    }

    fn orders<'a>(&'a self, customer: &'a str, filter: OrderFilter, limit: usize) -> LoyaltyFuture<'a, Vec<Order>> {
        self.local.orders(customer, filter, limit)
    }

    fn order<'a>(&'a self, order_id: &'a str) -> LoyaltyFuture<'a, Option<Order>> {
        self.local.order(order_id)
    }
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("cus_1.a-b~"), "cus_1.a-b~");
        assert_eq!(path_segment(".."), "%2E%2E");
        assert_eq!(path_segment("."), "%2E");
        assert_eq!(path_segment("a/../b?x#y"), "a%2F..%2Fb%3Fx%23y");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}

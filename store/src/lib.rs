//! The SQL record: schema, migrations and queries for SQLite and PostgreSQL.
//!
//! - [`Store::connect`] picks the backend from the URL (SQLite when empty or
//!   `sqlite:`, PostgreSQL for `postgres://`) and runs the migrations.
//! - `migrate`: the one list of migrations both backends run, under a lock.
//! - `persist`: the worker's batch writer ([`Store::persist`]): one
//!   transaction, idempotent and order-safe under at-least-once delivery.
//! - `password`: argon2 hashing and verification on the blocking pool.
//! - [`attachments`]: uploads (written by the gateway, linked to their
//!   message by the worker, swept by the gateways).
//! - [`loyalty`]: the loyalty store trait (points ledger, vouchers, orders)
//!   with its SQL implementation and the external service's HTTP client.
//! - Reads (this file): history pages, message metadata, conversation state,
//!   agents and customers, used by the gateway and by the worker's rebuild.
//!
//! Both backends go through sqlx's `Any` driver with `$n` placeholders and
//! only `TEXT`/`BIGINT` columns, so every query is written once.
//! The worker is the only writer of history; the gateway reads.

pub mod attachments;
pub mod loyalty;
mod migrate;
mod password;
mod persist;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use schema::envelope::LogEvent;
use schema::frames::{CustomerRef, Message, MessageKind, ReplyRef, UserKind, UserRef};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

use crate::persist::to_i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(String),
    #[error("not found")]
    NotFound,
    #[error("invalid: {0}")]
    Invalid(String),
}

impl StoreError {
    /// True when the database refused this *data* (a constraint, a value out
    /// of range), so retrying the same input cannot help. Everything else
    /// (unreachable, busy, deadlock, a missing table) is worth retrying: a
    /// caller that drops input on a data error must not drop it on those.
    pub fn is_data_error(&self) -> bool {
        match self {
            StoreError::Invalid(_) => true,
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code().unwrap_or_default();
                // A PostgreSQL SQLSTATE is always five characters, often all
                // digits ("23505"): tell it from SQLite's numbers by length
                // (SQLite's extended result codes have at most four digits).
                if code.len() == 5 {
                    // Data exception, integrity violation.
                    return code.starts_with("22") || code.starts_with("23");
                }
                match code.parse::<i64>() {
                    // SQLite (extended) result code; the primary is the low byte:
                    // TOOBIG, CONSTRAINT, MISMATCH, RANGE.
                    Ok(n) => matches!(n & 0xff, 18 | 19 | 20 | 25),
                    Err(_) => false,
                }
            }
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Every SQLite connection's settings. sqlx's defaults already give
/// busy_timeout = 5 s and foreign_keys = ON; synchronous = NORMAL is safe
/// with WAL (a power loss may drop the last commits, never corrupt) and much
/// faster. The worker's batches look up conversations and messages by key
/// all over the file: a 32 MiB page cache per connection (the default is
/// 2 MiB) and reads through a memory map (up to 256 MiB of the file) keep
/// those lookups out of `pread` copies; statement journals stay in memory.
/// Measured in BENCHMARKS.md (session 12, "the worker's SQLite").
const SQLITE_PRAGMAS: &str = "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
     PRAGMA cache_size = -32768; PRAGMA mmap_size = 268435456; PRAGMA temp_store = MEMORY";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a URL names, or `None` for an unsupported scheme.
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.is_empty() || url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Agent {
    pub id: String,
    pub username: String,
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Customer {
    pub id: String,
    pub username: String,
    pub avatar_url: Option<String>,
    pub created_at: i64,
}

/// What the gateway needs to authorise an edit/delete/reply against a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub kind: MessageKind,
    pub deleted: bool,
    pub excerpt: String,
}

/// One edit or delete of a message, from the audit trail (`message_edits`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageEdit {
    pub seq: u64,
    /// The change's own position in the conversation.
    pub pos: u64,
    /// `edit` or `delete`.
    pub action: String,
    /// `agent` or `customer`.
    pub by_kind: String,
    pub by_id: String,
    /// The text before the change; `None` when the record did not hold the
    /// message yet when the change was applied.
    pub previous_text: Option<String>,
    pub ts: i64,
}

/// A conversation as the SQL record has it (used to rebuild Redis rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationState {
    pub id: String,
    pub customer: CustomerRef,
    pub preview: String,
    pub last_ts: i64,
    /// Highest event position persisted (messages, edits, deletes, reactions).
    pub last_pos: u64,
    /// Customer messages after `staff_seen`, not deleted.
    pub unread: u64,
    pub staff_delivered: u64,
    pub staff_seen: u64,
    pub customer_delivered: u64,
    pub customer_seen: u64,
}

/// What one `persist` call changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Persisted {
    /// Conversations touched by the batch (each once).
    pub conversations: Vec<String>,
    /// Messages inserted now (duplicates of already stored ones not counted).
    pub inserted: usize,
}

/// Preview of a conversation whose messages are all deleted.
pub const DELETED_PREVIEW: &str = "Message deleted";

/// Default SQLite database when the URL is empty.
pub const DEFAULT_SQLITE_URL: &str = "sqlite://data/chat.db";

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Columns [`state_from_row`] reads, from `conversations c LEFT JOIN customers cu`.
pub(crate) const STATE_COLUMNS: &str = "c.id, c.customer_id, COALESCE(cu.username, c.customer_id) AS username,
    cu.avatar_url, c.preview, c.last_ts, c.last_pos, c.unread, c.staff_delivered, c.staff_seen,
    c.customer_delivered, c.customer_seen";

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn state_from_row(row: &AnyRow) -> Result<ConversationState> {
    Ok(ConversationState {
        id: row.try_get("id")?,
        customer: CustomerRef {
            id: row.try_get("customer_id")?,
            username: row.try_get("username")?,
            avatar_url: row.try_get("avatar_url")?,
        },
        preview: row.try_get("preview")?,
        last_ts: row.try_get("last_ts")?,
        last_pos: u(row.try_get("last_pos")?),
        unread: u(row.try_get("unread")?),
        staff_delivered: u(row.try_get("staff_delivered")?),
        staff_seen: u(row.try_get("staff_seen")?),
        customer_delivered: u(row.try_get("customer_delivered")?),
        customer_seen: u(row.try_get("customer_seen")?),
    })
}

/// SQLite: the file path inside a `sqlite:` URL, without query parameters.
fn sqlite_path(url: &str) -> &str {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

fn parse_user_kind(s: &str) -> Option<UserKind> {
    match s {
        "agent" => Some(UserKind::Agent),
        "customer" => Some(UserKind::Customer),
        _ => None,
    }
}

const MESSAGE_COLUMNS: &str = "seq, kind, author_kind, author_id, author_name, text, reply_to_seq, reply_excerpt,
    ts, edited_at, deleted, client_id, order_json, attachments_json";

fn message_from_row(row: &AnyRow) -> Result<Message> {
    let seq: i64 = row.try_get("seq")?;
    let kind_text: String = row.try_get("kind")?;
    let kind = MessageKind::parse(&kind_text)
        .ok_or_else(|| StoreError::Invalid(format!("message {seq} has unknown kind {kind_text:?}")))?;
    let deleted = row.try_get::<i64, _>("deleted")? != 0;
    let author = match kind {
        MessageKind::Customer | MessageKind::Staff => {
            let ak: Option<String> = row.try_get("author_kind")?;
            let id: Option<String> = row.try_get("author_id")?;
            let name: Option<String> = row.try_get("author_name")?;
            match (ak.as_deref().and_then(parse_user_kind), id, name) {
                (Some(kind), Some(id), Some(username)) => Some(UserRef { kind, id, username }),
                _ => None,
            }
        }
        MessageKind::System | MessageKind::Order => None,
    };
    let reply_seq: Option<i64> = row.try_get("reply_to_seq")?;
    let reply_excerpt: Option<String> = row.try_get("reply_excerpt")?;
    let order_json: Option<String> = row.try_get("order_json")?;
    let order = match order_json {
        // A malformed payload is shown as absent rather than failing the page.
        Some(text) => serde_json::from_str(&text).ok(),
        None => None,
    };
    Ok(Message {
        seq: u(seq),
        kind,
        author,
        text: if deleted { String::new() } else { row.try_get("text")? },
        reply_to: reply_seq.map(|s| ReplyRef { seq: u(s), excerpt: reply_excerpt.unwrap_or_default() }),
        ts: row.try_get("ts")?,
        edited_at: row.try_get("edited_at")?,
        deleted,
        reactions: BTreeMap::new(),
        order,
        client_id: row.try_get("client_id")?,
        attachments: match row.try_get::<Option<String>, _>("attachments_json")? {
            // A deleted message shows nothing of its files; a malformed
            // payload is shown as none rather than failing the page.
            Some(j) if !deleted => serde_json::from_str(&j).unwrap_or_default(),
            _ => Vec::new(),
        },
    })
}

impl Store {
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend =
            Backend::from_url(url).ok_or_else(|| StoreError::Invalid(format!("unsupported database URL scheme: {url:?}")))?;
        let pool = match backend {
            Backend::Sqlite => Self::connect_sqlite(if url.is_empty() { DEFAULT_SQLITE_URL } else { url }).await?,
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?
            }
        };
        migrate::run(&pool, backend).await?;
        Ok(Store { pool, backend })
    }

    async fn connect_sqlite(url: &str) -> Result<AnyPool> {
        let path = sqlite_path(url);
        let in_memory = path.is_empty() || path.starts_with(":memory:") || url.contains("mode=memory");
        if !in_memory {
            if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Invalid(format!("cannot create {}: {e}", parent.display())))?;
            }
        }
        let url = if in_memory || url.contains("mode=") {
            url.to_string()
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        // Connection settings: `SQLITE_PRAGMAS`.
        // Through the Any driver every new connection to `:memory:` opens a
        // new, empty database: an in-memory store is one connection, kept forever.
        let options = if in_memory {
            AnyPoolOptions::new().max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
        } else {
            AnyPoolOptions::new().max_connections(4)
        };
        let pool = options
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        if !in_memory {
            // WAL is a property of the file. Switching needs an exclusive lock
            // that busy_timeout does not wait for, so a second process
            // starting at the same moment retries for a while.
            let mut attempt = 0;
            loop {
                match sqlx::query("PRAGMA journal_mode = WAL").fetch_optional(&pool).await {
                    Ok(_) => break,
                    Err(e) if attempt < 50 => {
                        tracing::debug!(error = %e, "journal_mode busy, retrying");
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(pool)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Creates the agent, or updates the display name and password of an
    /// existing one with this username.
    pub async fn ensure_agent(&self, username: &str, display_name: &str, password: &str) -> Result<Agent> {
        if !schema::ids::valid_username(username) {
            return Err(StoreError::Invalid(format!("invalid username {username:?}")));
        }
        let hash = password::hash(password).await?;
        let id = format!("a-{:016x}", rand::random::<u64>());
        sqlx::query(
            "INSERT INTO agents (id, username, display_name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (username) DO UPDATE SET display_name = excluded.display_name, password_hash = excluded.password_hash",
        )
        .bind(&id)
        .bind(username)
        .bind(display_name)
        .bind(&hash)
        .bind(schema::now_ms())
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT id, username, display_name FROM agents WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(Agent { id: row.try_get("id")?, username: row.try_get("username")?, display_name: row.try_get("display_name")? })
    }

    /// The agent when `password` matches; `None` for a wrong password or an
    /// unknown username, which take about the same time.
    pub async fn verify_agent(&self, username: &str, password: &str) -> Result<Option<Agent>> {
        let row = sqlx::query("SELECT id, username, display_name, password_hash FROM agents WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        let (agent, stored) = match row {
            Some(r) => (
                Some(Agent { id: r.try_get("id")?, username: r.try_get("username")?, display_name: r.try_get("display_name")? }),
                Some(r.try_get::<String, _>("password_hash")?),
            ),
            None => (None, None),
        };
        let ok = password::verify(password, stored).await?;
        Ok(if ok { agent } else { None })
    }

    pub async fn agent(&self, id: &str) -> Result<Option<Agent>> {
        let row = sqlx::query("SELECT id, username, display_name FROM agents WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Agent { id: r.try_get("id")?, username: r.try_get("username")?, display_name: r.try_get("display_name")? })
        })
        .transpose()
    }

    /// Creates or updates a customer's profile (the newest profile wins over
    /// the ones carried by older messages still in flight).
    pub async fn upsert_customer(&self, id: &str, username: &str, avatar_url: Option<&str>) -> Result<Customer> {
        let now = schema::now_ms();
        sqlx::query(
            "INSERT INTO customers (id, username, avatar_url, created_at, profile_ts) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (id) DO UPDATE SET username = excluded.username, avatar_url = excluded.avatar_url,
                profile_ts = CASE WHEN excluded.profile_ts > customers.profile_ts THEN excluded.profile_ts ELSE customers.profile_ts END",
        )
        .bind(id)
        .bind(username)
        .bind(avatar_url)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.customer(id).await?.ok_or(StoreError::NotFound)
    }

    pub async fn customer(&self, id: &str) -> Result<Option<Customer>> {
        let row = sqlx::query("SELECT id, username, avatar_url, created_at FROM customers WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Customer {
                id: r.try_get("id")?,
                username: r.try_get("username")?,
                avatar_url: r.try_get("avatar_url")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Persists a batch in one transaction (see the `persist` module for why
    /// replays in any order converge).
    pub async fn persist(&self, events: &[LogEvent]) -> Result<Persisted> {
        Ok(persist::persist(&self.pool, self.backend, events).await?.0)
    }

    /// [`Store::persist`], also returning the state of every conversation
    /// whose chat-list row the batch may have changed, as committed by this
    /// transaction (ordered by id), so the worker needs no second query to
    /// update Redis. A conversation touched only by customer receipts is left
    /// out: the row shows no customer read state.
    pub async fn persist_with_states(&self, events: &[LogEvent]) -> Result<(Persisted, Vec<ConversationState>)> {
        persist::persist(&self.pool, self.backend, events).await
    }

    /// Indexes of the messages in `events` whose `(conversation, seq)` the
    /// record holds with a different message (a counter that went back after
    /// a Redis failover). Call after persisting them: a message persisted
    /// now, or redelivered, is not one.
    /// The seq of the record's copy of a message retried after Redis's
    /// dedupe window (see `persist::stored_copy`); `None` for anything else.
    pub async fn stored_copy(&self, event: &LogEvent) -> Result<Option<u64>> {
        persist::stored_copy(&self.pool, event).await
    }

    pub async fn seq_conflicts(&self, events: &[LogEvent]) -> Result<Vec<usize>> {
        persist::seq_conflicts(&self.pool, self.backend, events).await
    }

    /// Messages with `seq < before` (the latest when `None`), at most `limit`
    /// (clamped to 1..=MAX_PAGE), oldest first, and whether older ones exist.
    pub async fn messages_page(&self, conv: &str, before: Option<u64>, limit: usize) -> Result<(Vec<Message>, bool)> {
        let limit = limit.clamp(1, schema::limits::MAX_PAGE);
        let before = before.map(to_i64).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND stub = 0 AND seq < $2
             ORDER BY seq DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(conv)
            .bind(before)
            .bind(limit as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let has_more = rows.len() > limit;
        let mut messages = rows.iter().take(limit).map(message_from_row).collect::<Result<Vec<_>>>()?;
        messages.reverse();
        if let (Some(first), Some(last)) = (messages.first(), messages.last()) {
            let counts = sqlx::query(
                "SELECT seq, emoji, COUNT(*) AS n FROM reactions
                 WHERE conversation_id = $1 AND seq >= $2 AND seq <= $3 AND on_state = 1 GROUP BY seq, emoji",
            )
            .bind(conv)
            .bind(to_i64(first.seq))
            .bind(to_i64(last.seq))
            .fetch_all(&self.pool)
            .await?;
            let mut by_seq: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
            for r in counts {
                let seq = u(r.try_get("seq")?);
                let emoji: String = r.try_get("emoji")?;
                let n = u(r.try_get("n")?);
                by_seq.entry(seq).or_default().insert(emoji, n);
            }
            for m in messages.iter_mut().filter(|m| !m.deleted) {
                if let Some(r) = by_seq.remove(&m.seq) {
                    m.reactions = r;
                }
            }
        }
        Ok((messages, has_more))
    }

    pub async fn message_meta(&self, conv: &str, seq: u64) -> Result<Option<MessageMeta>> {
        let row = sqlx::query(
            "SELECT kind, deleted, excerpt FROM messages WHERE conversation_id = $1 AND seq = $2 AND stub = 0",
        )
        .bind(conv)
        .bind(to_i64(seq))
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let kind_text: String = r.try_get("kind")?;
        let kind = MessageKind::parse(&kind_text)
            .ok_or_else(|| StoreError::Invalid(format!("message {seq} has unknown kind {kind_text:?}")))?;
        let deleted = r.try_get::<i64, _>("deleted")? != 0;
        Ok(Some(MessageMeta { kind, deleted, excerpt: if deleted { String::new() } else { r.try_get("excerpt")? } }))
    }

    /// The audit trail of one message: its edits and deletes, oldest first.
    pub async fn message_edits(&self, conv: &str, seq: u64) -> Result<Vec<MessageEdit>> {
        let rows = sqlx::query(
            "SELECT seq, pos, action, by_kind, by_id, previous_text, ts FROM message_edits
             WHERE conversation_id = $1 AND seq = $2 ORDER BY pos",
        )
        .bind(conv)
        .bind(to_i64(seq))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MessageEdit {
                    seq: u(r.try_get("seq")?),
                    pos: u(r.try_get("pos")?),
                    action: r.try_get("action")?,
                    by_kind: r.try_get("by_kind")?,
                    by_id: r.try_get("by_id")?,
                    previous_text: r.try_get("previous_text")?,
                    ts: r.try_get("ts")?,
                })
            })
            .collect()
    }

    /// Highest event position persisted for `conv` (0 when unknown).
    pub async fn max_pos(&self, conv: &str) -> Result<u64> {
        let row = sqlx::query("SELECT last_pos FROM conversations WHERE id = $1")
            .bind(conv)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => u(r.try_get("last_pos")?),
            None => 0,
        })
    }

    pub async fn conversation_state(&self, conv: &str) -> Result<Option<ConversationState>> {
        Ok(self.conversation_states(&[conv.to_string()]).await?.into_iter().next())
    }

    /// States of the conversations among `ids` that exist, ordered by id.
    pub async fn conversation_states(&self, ids: &[String]) -> Result<Vec<ConversationState>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.pool.acquire().await?;
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        persist::read_states(&mut conn, self.backend, &ids).await
    }

    /// Conversation ids in id order, after `after` (exclusive); `limit` is
    /// clamped to 1..=10000.
    pub async fn conversation_ids(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let limit = limit.clamp(1, 10_000) as i64;
        let rows = match after {
            Some(after) => {
                sqlx::query("SELECT id FROM conversations WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => sqlx::query("SELECT id FROM conversations ORDER BY id LIMIT $1").bind(limit).fetch_all(&self.pool).await?,
        };
        rows.iter().map(|r| r.try_get::<String, _>("id").map_err(StoreError::from)).collect()
    }

    /// Messages stored in `conv`, deleted ones included (they keep their seq).
    pub async fn message_count(&self, conv: &str) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM messages WHERE conversation_id = $1 AND stub = 0")
            .bind(conv)
            .fetch_one(&self.pool)
            .await?;
        Ok(u(row.try_get("n")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(Backend::from_url(""), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite://data/chat.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgresql://x/y"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("mysql://x"), None);
        assert_eq!(sqlite_path("sqlite://data/chat.db?mode=rwc"), "data/chat.db");
        assert_eq!(sqlite_path("sqlite:///tmp/a.db"), "/tmp/a.db");
        assert_eq!(sqlite_path("sqlite:a.db"), "a.db");
    }
}

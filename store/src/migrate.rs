//! Schema migrations: one list, the same logical schema for both backends.
//!
//! Every statement sticks to the SQL both SQLite and PostgreSQL accept
//! (`TEXT`, `BIGINT`, `ON CONFLICT`), so there is one list to review. Booleans
//! are `BIGINT` 0/1 because the `Any` driver maps them the same on both.
//!
//! Two processes may start against the same fresh database (gateway and
//! worker): the whole run happens under one lock, `BEGIN IMMEDIATE` on SQLite
//! (the write lock, waited for through `busy_timeout`) and a transaction-scoped
//! advisory lock on PostgreSQL; the loser then sees the versions the winner
//! recorded and applies nothing.

use sqlx::{AnyPool, Executor, Row};

use crate::{Backend, Result, StoreError};

/// `(version, statements)`, applied in order; never edit a released entry,
/// append a new one.
const MIGRATIONS: &[(i64, &[&str])] = &[
(
    1,
    &[
        "CREATE TABLE IF NOT EXISTS agents (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            display_name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
        // profile_ts: time of the newest profile written, so an older replayed
        // message cannot overwrite a newer username or avatar.
        "CREATE TABLE IF NOT EXISTS customers (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL,
            avatar_url TEXT,
            created_at BIGINT NOT NULL,
            profile_ts BIGINT NOT NULL DEFAULT 0
        )",
        "CREATE INDEX IF NOT EXISTS customers_username ON customers (username)",
        // No foreign key to customers: a read receipt may be persisted before
        // the conversation's first message names the customer.
        "CREATE TABLE IF NOT EXISTS conversations (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            preview TEXT NOT NULL DEFAULT '',
            last_ts BIGINT NOT NULL DEFAULT 0,
            last_pos BIGINT NOT NULL DEFAULT 0,
            unread BIGINT NOT NULL DEFAULT 0,
            staff_delivered BIGINT NOT NULL DEFAULT 0,
            staff_seen BIGINT NOT NULL DEFAULT 0,
            customer_delivered BIGINT NOT NULL DEFAULT 0,
            customer_seen BIGINT NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL DEFAULT 0
        )",
        // stub = 1: an edit or delete arrived before its message (out-of-order
        // redelivery); the row holds that outcome until the message fills it.
        // Readers skip stubs. excerpt is computed once, in Rust, on write.
        "CREATE TABLE IF NOT EXISTS messages (
            conversation_id TEXT NOT NULL REFERENCES conversations (id),
            seq BIGINT NOT NULL,
            stub BIGINT NOT NULL DEFAULT 0,
            kind TEXT NOT NULL,
            author_kind TEXT,
            author_id TEXT,
            author_name TEXT,
            text TEXT NOT NULL,
            excerpt TEXT NOT NULL DEFAULT '',
            reply_to_seq BIGINT,
            reply_excerpt TEXT,
            ts BIGINT NOT NULL,
            edited_at BIGINT,
            edit_pos BIGINT NOT NULL DEFAULT 0,
            deleted BIGINT NOT NULL DEFAULT 0,
            client_id TEXT,
            order_json TEXT,
            PRIMARY KEY (conversation_id, seq)
        )",
        // No foreign key to messages: a reaction may arrive before its message.
        "CREATE TABLE IF NOT EXISTS reactions (
            conversation_id TEXT NOT NULL REFERENCES conversations (id),
            seq BIGINT NOT NULL,
            who TEXT NOT NULL,
            emoji TEXT NOT NULL,
            on_state BIGINT NOT NULL,
            pos BIGINT NOT NULL,
            PRIMARY KEY (conversation_id, seq, who, emoji)
        )",
    ],
),
(
    2,
    &[
        // The seq of the latest message, kept by persist (only grows), so
        // the chat-list preview is a lookup by key instead of a scan.
        "ALTER TABLE conversations ADD COLUMN last_msg_seq BIGINT NOT NULL DEFAULT 0",
        "UPDATE conversations SET last_msg_seq = COALESCE((SELECT MAX(m.seq) FROM messages m
            WHERE m.conversation_id = conversations.id AND m.stub = 0), 0)",
    ],
),
(
    3,
    &[
        // Order cards change after they are posted: the highest update
        // position wins (an update may reach the worker before its card).
        "ALTER TABLE messages ADD COLUMN order_pos BIGINT NOT NULL DEFAULT 0",
        // One row per customer with a ledger: the balance (always equal to the
        // ledger's sum, both written in one transaction) and the number of
        // entries. Updating this row is what serialises concurrent actions
        // on one customer (a row lock on PostgreSQL).
        "CREATE TABLE IF NOT EXISTS loyalty_accounts (
            customer_id TEXT PRIMARY KEY,
            balance BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
            entries BIGINT NOT NULL DEFAULT 0
        )",
        // Append-only: rows are inserted, never updated or deleted.
        "CREATE TABLE IF NOT EXISTS loyalty_ledger (
            customer_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            kind TEXT NOT NULL,
            amount BIGINT NOT NULL,
            balance_after BIGINT NOT NULL,
            reason TEXT,
            by_id TEXT,
            by_username TEXT,
            by_display_name TEXT,
            idempotency_key TEXT,
            ts BIGINT NOT NULL,
            PRIMARY KEY (customer_id, seq)
        )",
        // Every executed points action by idempotency key: what was asked
        // (fingerprint) and what it did (outcome JSON), so a repeat returns
        // the same outcome and a different request under the key is refused.
        "CREATE TABLE IF NOT EXISTS loyalty_requests (
            idempotency_key TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            outcome_json TEXT NOT NULL DEFAULT '',
            created_at BIGINT NOT NULL
        )",
        "CREATE TABLE IF NOT EXISTS vouchers (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            title TEXT NOT NULL,
            code TEXT NOT NULL,
            expires_at BIGINT,
            state TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS vouchers_customer ON vouchers (customer_id)",
        // The current state is the event with the highest (status_ts,
        // status_rank); history_json keeps every (status, ts) seen. card_*:
        // which message shows the order and which state it shows.
        "CREATE TABLE IF NOT EXISTS orders (
            id TEXT PRIMARY KEY,
            customer_id TEXT NOT NULL,
            status TEXT NOT NULL,
            status_ts BIGINT NOT NULL,
            status_rank BIGINT NOT NULL,
            items_json TEXT NOT NULL,
            total TEXT NOT NULL,
            currency TEXT,
            history_json TEXT NOT NULL,
            placed_at BIGINT NOT NULL,
            card_seq BIGINT NOT NULL DEFAULT 0,
            card_status TEXT NOT NULL DEFAULT '',
            card_ts BIGINT NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL
        )",
        "CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_id, status_ts)",
    ],
),
(
    4,
    &[
        // Idempotency keys per agent (issue 20): one agent's key can neither
        // replay nor block another's action. Keys already used are carried
        // over under the agent their ledger entry names ('' when it names
        // none: a no-op reset, or an action without an actor).
        "CREATE TABLE IF NOT EXISTS loyalty_agent_requests (
            agent_id TEXT NOT NULL,
            idempotency_key TEXT NOT NULL,
            customer_id TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            outcome_json TEXT NOT NULL DEFAULT '',
            created_at BIGINT NOT NULL,
            PRIMARY KEY (agent_id, idempotency_key)
        )",
        // The fingerprint now starts with the agent's id and a newline (a
        // literal newline inside the quotes: both backends accept it).
        "INSERT INTO loyalty_agent_requests (agent_id, idempotency_key, customer_id, fingerprint, outcome_json, created_at)
         SELECT o.agent_id, o.idempotency_key, o.customer_id, o.agent_id || '\n' || o.fingerprint, o.outcome_json, o.created_at
         FROM (SELECT COALESCE((SELECT l.by_id FROM loyalty_ledger l
                                WHERE l.idempotency_key = r.idempotency_key AND l.customer_id = r.customer_id LIMIT 1), '') AS agent_id,
                      r.idempotency_key, r.customer_id, r.fingerprint, r.outcome_json, r.created_at
               FROM loyalty_requests r) o
         WHERE true
         ON CONFLICT (agent_id, idempotency_key) DO NOTHING",
    ],
),
// Numbered 20 (issue 20), not 4: other branches may append their own next
// numbers; versions only need to be distinct, and they apply in list order.
(
    20,
    &[
        // The audit trail of edits and deletes, written by the worker as it
        // applies them: who, when, and the text the message had before.
        // One row per event position (a position is unique in a
        // conversation), so a redelivered event writes nothing twice.
        "CREATE TABLE IF NOT EXISTS message_edits (
            conversation_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            pos BIGINT NOT NULL,
            action TEXT NOT NULL,
            by_kind TEXT NOT NULL,
            by_id TEXT NOT NULL,
            previous_text TEXT,
            ts BIGINT NOT NULL,
            PRIMARY KEY (conversation_id, pos)
        )",
        "CREATE INDEX IF NOT EXISTS message_edits_message ON message_edits (conversation_id, seq, pos)",
    ],
),
(
    50,
    &[
        // A sender's client_id is stored once per conversation (issue 17,
        // item 5): Redis dedupes retries within the conversation's recent
        // window; a retry later than that gets a fresh position from Redis,
        // and this index keeps the record from holding a second copy (the
        // worker then drops the copy: `worker_late_duplicates_total`).
        // Copies already stored are removed first, keeping the earliest.
        // System posts (no author id) are not covered: their ids are the
        // server's own.
        "DELETE FROM messages WHERE stub = 0 AND client_id IS NOT NULL AND author_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM messages o WHERE o.conversation_id = messages.conversation_id AND o.stub = 0
              AND o.author_kind = messages.author_kind AND o.author_id = messages.author_id
              AND o.client_id = messages.client_id AND o.seq < messages.seq)",
        "CREATE UNIQUE INDEX IF NOT EXISTS messages_client_once ON messages (conversation_id, author_kind, author_id, client_id)
         WHERE client_id IS NOT NULL AND author_id IS NOT NULL AND stub = 0",
    ],
),
// Numbered 30 (issue 19, attachments): the range this branch was given.
(
    30,
    &[
        // One row per upload. The gateway writes it at upload and claims it
        // for a message at `send` (conversation_id, client_id: only its
        // uploader, once, a retry of the same send again); the worker sets
        // seq when it persists the message and deleted_at when the message
        // is deleted. Rows never attached (seq NULL) a day after upload, and
        // deleted ones, are swept with their blobs by the gateways.
        "CREATE TABLE IF NOT EXISTS attachments (
            id TEXT PRIMARY KEY,
            owner_kind TEXT NOT NULL,
            owner_id TEXT NOT NULL,
            name TEXT NOT NULL,
            size BIGINT NOT NULL,
            content_type TEXT NOT NULL,
            blob_key TEXT NOT NULL,
            thumb_key TEXT,
            width BIGINT,
            height BIGINT,
            created_at BIGINT NOT NULL,
            conversation_id TEXT,
            client_id TEXT,
            seq BIGINT,
            deleted_at BIGINT
        )",
        "CREATE INDEX IF NOT EXISTS attachments_created ON attachments (created_at)",
        "CREATE INDEX IF NOT EXISTS attachments_message ON attachments (conversation_id, seq)",
        "CREATE INDEX IF NOT EXISTS attachments_deleted ON attachments (deleted_at)",
        // The message's attachments as the clients see them (JSON array of
        // schema::frames::Attachment), so a history page needs no join.
        "ALTER TABLE messages ADD COLUMN attachments_json TEXT",
    ],
)];

/// Arbitrary constant naming this schema's advisory lock on PostgreSQL.
const PG_LOCK_KEY: i64 = 0x0063_6861_746d_6967; // "chatmig"

pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> Result<()> {
    let mut tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PG_LOCK_KEY).execute(&mut *tx).await?;
            tx
        }
    };
    tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations")
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<std::result::Result<_, _>>()?;
    for (version, statements) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        for statement in *statements {
            tx.execute(*statement)
                .await
                .map_err(|e| StoreError::Migrate(format!("version {version}: {e}")))?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(*version)
            .bind(schema::now_ms())
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, "applied migration");
    }
    tx.commit().await?;
    Ok(())
}

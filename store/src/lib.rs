//! The SQL record: schema, migrations and queries for SQLite and PostgreSQL.
//!
//! - `Store::connect` picks the backend from the URL (SQLite when empty or
//!   `sqlite://`, PostgreSQL for `postgres://`) and runs the migrations.
//! - The worker is the only writer of history (`persist`); the gateway reads
//!   pages, message metadata and agents.
//!
//! CONTRACT STUB: the signatures below are what gateway and worker use.

use schema::envelope::LogEvent;
use schema::frames::{CustomerRef, Message, MessageKind};

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

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
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

#[derive(Clone)]
pub struct Store {
    _private: (),
}

impl Store {
    pub async fn connect(_url: &str) -> Result<Store> { todo!() }
    pub fn backend(&self) -> Backend { todo!() }
    pub async fn ping(&self) -> Result<()> { todo!() }
    pub async fn ensure_agent(&self, _username: &str, _display_name: &str, _password: &str) -> Result<Agent> { todo!() }
    pub async fn verify_agent(&self, _username: &str, _password: &str) -> Result<Option<Agent>> { todo!() }
    pub async fn agent(&self, _id: &str) -> Result<Option<Agent>> { todo!() }
    pub async fn upsert_customer(&self, _id: &str, _username: &str, _avatar_url: Option<&str>) -> Result<Customer> { todo!() }
    pub async fn customer(&self, _id: &str) -> Result<Option<Customer>> { todo!() }
    pub async fn persist(&self, _events: &[LogEvent]) -> Result<Persisted> { todo!() }
    pub async fn messages_page(&self, _conv: &str, _before: Option<u64>, _limit: usize) -> Result<(Vec<Message>, bool)> { todo!() }
    pub async fn message_meta(&self, _conv: &str, _seq: u64) -> Result<Option<MessageMeta>> { todo!() }
    pub async fn max_pos(&self, _conv: &str) -> Result<u64> { todo!() }
    pub async fn conversation_state(&self, _conv: &str) -> Result<Option<ConversationState>> { todo!() }
    pub async fn conversation_ids(&self, _after: Option<&str>, _limit: usize) -> Result<Vec<String>> { todo!() }
    pub async fn message_count(&self, _conv: &str) -> Result<u64> { todo!() }
}

//! The chat list in Redis, derived from the SQL record: one hash per
//! conversation and three sorted sets, plus the authoritative `conversation`
//! frame relayed to staff nodes.
//!
//! - `keys.row(conv)` hash: `customer_id`, `username`, `avatar_url` (empty
//!   when none), `preview`, `last_ts`, `last_seq` (= SQL `last_pos`),
//!   `unread`, and `staff_seen` (the script's tie-breaker).
//! - `keys.chats_all()`: member conv id, score `last_ts`.
//! - `keys.chats_unread()`: the same, only while `unread > 0`.
//! - `keys.chats_names()`: score 0, member `lowercase(username) \0 conv id`.
//! - `keys.staff_events()` (the staff stream every gateway reads): `e` =
//!   `Relay { Staff, Some(conv), pos 0, conversation frame }`.
//!
//! Conversations with no message yet (only receipts) get a row hash but stay
//! out of the sorted sets and are not relayed.
//!
//! Several workers may write the same conversation's row (a reclaimed entry
//! processed next to new ones), and their Redis writes may land in any order.
//! The row is written by a script that keeps the newest state: states only
//! move forward in `(last_pos, staff_seen)` (both only grow in SQL, and a
//! state read after another commit dominates it), so an older one is refused.
//! The sorted sets are single-key writes done afterwards for rows the script
//! accepted; keeping them out of the script keeps every multi-key operation
//! inside one Cluster slot.

use redis::aio::ConnectionLike;
use redis::{ErrorKind, Pipeline, Script, Value};
use schema::envelope::{self, Audience, Relay};
use schema::frames::{ConversationRow, ServerFrame};
use schema::keys::{Keys, FIELD};
use store::{ConversationState, Store};

use crate::WorkerError;


/// KEYS[1] = row hash. ARGV = customer_id, username, avatar_url, preview,
/// last_ts, last_seq, unread, staff_seen. Returns {applied (0/1), previous
/// username, previous last_ts (0 when none), shown (1 when anything an agent
/// sees changed: not so for a customer's receipt)}.
const ROW_SCRIPT: &str = r#"
local cur = redis.call('HMGET', KEYS[1], 'last_seq', 'staff_seen', 'username', 'last_ts', 'avatar_url', 'preview', 'unread')
local old_seq = tonumber(cur[1])
local old_name = cur[3] or ''
local old_ts = tonumber(cur[4]) or 0
if old_seq then
  local new_seq = tonumber(ARGV[6])
  if new_seq < old_seq then return {0, old_name, old_ts, 0} end
  if new_seq == old_seq and tonumber(ARGV[8]) < (tonumber(cur[2]) or 0) then return {0, old_name, old_ts, 0} end
  if cur[3] == ARGV[2] and cur[5] == ARGV[3] and cur[6] == ARGV[4] and cur[4] == ARGV[5]
    and cur[1] == ARGV[6] and cur[7] == ARGV[7] then
    if cur[2] ~= ARGV[8] then redis.call('HSET', KEYS[1], 'staff_seen', ARGV[8]) end
    return {1, old_name, old_ts, 0}
  end
end
redis.call('HSET', KEYS[1], 'customer_id', ARGV[1], 'username', ARGV[2], 'avatar_url', ARGV[3],
  'preview', ARGV[4], 'last_ts', ARGV[5], 'last_seq', ARGV[6], 'unread', ARGV[7], 'staff_seen', ARGV[8])
return {1, old_name, old_ts, 1}
"#;

/// The chat-list writer: key layout plus the loaded row script.
#[derive(Clone)]
pub struct ChatList {
    keys: Keys,
    script: Script,
}

/// A state the row script accepted, with the username it replaced.
#[derive(Debug, Clone)]
pub struct Applied {
    pub state: ConversationState,
    pub old_username: String,
    /// The replaced row was already in the indexes (it had a message).
    pub was_listed: bool,
    /// Something agents see changed (preview, time, unread, name...): the
    /// row is relayed and indexed; otherwise (a customer's receipt) neither.
    pub shown: bool,
}

/// Member of the name index: lowercase username, NUL, conversation id.
pub fn name_member(username: &str, conv: &str) -> String {
    format!("{}\0{}", username.to_lowercase(), conv)
}

/// The chat-list row frame for a state.
pub fn row_of(state: &ConversationState) -> ConversationRow {
    ConversationRow {
        id: state.id.clone(),
        customer: state.customer.clone(),
        preview: state.preview.clone(),
        last_ts: state.last_ts,
        unread: state.unread,
        last_seq: state.last_pos,
    }
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::NoScriptError || e.code() == Some("NOSCRIPT")
}

impl ChatList {
    pub fn new(keys: Keys) -> Self {
        Self { keys, script: Script::new(ROW_SCRIPT) }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn push_row(&self, pipe: &mut Pipeline, s: &ConversationState) {
        pipe.cmd("EVALSHA")
            .arg(self.script.get_hash())
            .arg(1)
            .arg(self.keys.row(&s.id))
            .arg(&s.customer.id)
            .arg(&s.customer.username)
            .arg(s.customer.avatar_url.as_deref().unwrap_or(""))
            .arg(&s.preview)
            .arg(s.last_ts)
            .arg(s.last_pos)
            .arg(s.unread)
            .arg(s.staff_seen);
    }

    /// Round trip 1: the row scripts for `states`. Loads the script and
    /// retries once if Redis lost it.
    pub async fn write_rows(&self, conn: &mut (impl ConnectionLike + Send), states: &[ConversationState]) -> Result<Vec<Applied>, WorkerError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for s in states {
            self.push_row(&mut pipe, s);
        }
        let replies: Vec<Value> = match pipe.query_async(conn).await {
            Ok(v) => v,
            Err(e) if is_noscript(&e) => {
                self.script.load_async(conn).await?;
                pipe.query_async(conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        let mut applied = Vec::with_capacity(states.len());
        for (s, reply) in states.iter().zip(replies.iter()) {
            let (ok, old, old_ts, shown): (i64, String, i64, i64) = redis::from_redis_value(reply)?;
            if ok == 1 {
                applied.push(Applied { state: s.clone(), old_username: old, was_listed: old_ts > 0, shown: shown == 1 });
            }
        }
        Ok(applied)
    }

    /// Adds the sorted-set updates for accepted rows to `pipe`. A conversation
    /// without any message yet (only receipts so far) stays out of the list.
    pub fn push_indexes(&self, pipe: &mut Pipeline, applied: &[Applied]) {
        for a in applied {
            let s = &a.state;
            // Unchanged and listed: the indexes already hold it.
            if s.last_ts <= 0 || (a.was_listed && !a.shown) {
                continue;
            }
            pipe.zadd(self.keys.chats_all(), &s.id, s.last_ts).ignore();
            if s.unread > 0 {
                pipe.zadd(self.keys.chats_unread(), &s.id, s.last_ts).ignore();
            } else {
                pipe.zrem(self.keys.chats_unread(), &s.id).ignore();
            }
            // The name entry changes only with the username: an unchanged
            // name of a row already listed is in the index (one ZADD less
            // per row on the hot path).
            let member = name_member(&s.customer.username, &s.id);
            let old = (!a.old_username.is_empty()).then(|| name_member(&a.old_username, &s.id));
            if a.was_listed && old.as_deref() == Some(member.as_str()) {
                continue;
            }
            if let Some(old) = old.filter(|o| *o != member) {
                pipe.zrem(self.keys.chats_names(), old).ignore();
            }
            pipe.zadd(self.keys.chats_names(), member, 0).ignore();
        }
    }

    /// Adds the `conversation` frame of every accepted row to the staff stream.
    pub fn push_relays(&self, pipe: &mut Pipeline, applied: &[Applied]) -> usize {
        let mut n = 0;
        for a in applied.iter().filter(|a| a.state.last_ts > 0 && a.shown) {
            let relay = Relay {
                audience: Audience::Staff,
                conversation: Some(a.state.id.clone()),
                pos: 0,
                frame: ServerFrame::Conversation(row_of(&a.state)).to_json(),
            };
            redis_conn::xadd_capped(pipe, &self.keys.staff_events(), schema::limits::STAFF_EVENTS_LEN, FIELD, &envelope::encode(&relay));
            n += 1;
        }
        n
    }
}

/// Rewrites every conversation's row and index entries from the SQL record
/// (after Redis lost its state). Safe to run next to live workers: the row
/// script refuses to replace a newer state. Returns the rows written.
pub async fn rebuild_chat_list(store: &Store, redis: &mut (impl ConnectionLike + Send), keys: &Keys) -> Result<usize, WorkerError> {
    const PAGE: usize = 500;
    let list = ChatList::new(keys.clone());
    let mut after: Option<String> = None;
    let mut written = 0;
    loop {
        let ids = store.conversation_ids(after.as_deref(), PAGE).await?;
        let Some(last) = ids.last().cloned() else { break };
        let states = store.conversation_states(&ids).await?;
        let mut applied = list.write_rows(redis, &states).await?;
        // Rows may have survived what the indexes lost: write every entry.
        for a in &mut applied {
            a.was_listed = false;
            a.shown = true;
        }
        let mut pipe = redis::pipe();
        list.push_indexes(&mut pipe, &applied);
        if !pipe.is_empty() {
            pipe.query_async::<()>(redis).await?;
        }
        written += applied.len();
        if ids.len() < PAGE {
            break;
        }
        after = Some(last);
    }
    if written > 0 {
        tracing::info!(rows = written, "rebuilt chat list from the SQL store");
    } else {
        tracing::debug!("chat list rebuild: nothing to write");
    }
    Ok(written)
}

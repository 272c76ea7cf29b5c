//! The chat list in Redis, derived from the SQL record: one hash per
//! conversation and three sorted sets, plus the authoritative `conversation`
//! frame relayed to staff nodes.
//!
//! - `keys.row(conv)` hash: the fields of [`schema::chatlist`] (`customer_id`,
//!   `username`, `avatar_url`, `preview`, `last_ts`, `last_seq` = SQL
//!   `last_pos`, `unread`, and `staff_seen`, the script's tie-breaker).
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
use redis::{Pipeline, Value};
use redis_conn::script::{query_pipeline, Call};
use redis_conn::LuaScript;
use schema::chatlist;
use schema::envelope::{self, Audience, Relay};
use schema::frames::{ConversationRow, ServerFrame};
use schema::keys::{Keys, FIELD};
use store::{ConversationState, Store};

use crate::WorkerError;


/// The row script (`lua/row.lua`): writes a state unless the hash holds a
/// newer one. Its `ARGV` are [`schema::chatlist::encode`]'s values.
const ROW_SCRIPT: &str = include_str!("lua/row.lua");

/// The chat-list writer: key layout plus the loaded row script.
#[derive(Clone)]
pub struct ChatList {
    keys: Keys,
    script: LuaScript,
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

impl ChatList {
    pub fn new(keys: Keys) -> Self {
        Self { keys, script: LuaScript::new("row", ROW_SCRIPT) }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    fn push_row(&self, pipe: &mut Pipeline, s: &ConversationState) {
        let mut call = Call::new().key(self.keys.row(&s.id));
        for (_, value) in chatlist::encode(&row_of(s), s.staff_seen) {
            call = call.arg(value);
        }
        self.script.push(pipe, &call);
    }

    /// Round trip 1: the row scripts for `states` (reloaded and sent once
    /// more if Redis lost the script).
    pub async fn write_rows(&self, conn: &mut (impl ConnectionLike + Send), states: &[ConversationState]) -> Result<Vec<Applied>, WorkerError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for s in states {
            self.push_row(&mut pipe, s);
        }
        // Safe to repeat: the script refuses a state it already holds as new.
        let replies: Vec<Value> = query_pipeline(conn, &pipe, &[&self.script]).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The script's `HSET` names the fields of `schema::chatlist::FIELDS` in
    /// `ARGV` order: the Lua cannot drift from the codec.
    #[test]
    fn row_script_writes_the_codec_fields_in_argv_order() {
        let compact: String = ROW_SCRIPT.chars().filter(|c| !c.is_whitespace()).collect();
        let mut expected = String::from("redis.call('HSET',KEYS[1]");
        for (i, f) in chatlist::FIELDS.iter().enumerate() {
            expected.push_str(&format!(",'{f}',ARGV[{}]", i + 1));
        }
        expected.push(')');
        assert!(compact.contains(&expected), "the row script's HSET is not {expected}");
    }
}

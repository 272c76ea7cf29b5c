//! The Redis key layout, in one place.
//!
//! Every key starts with a configurable prefix (tests isolate themselves with
//! one). A conversation's keys carry the hash tag `{c:<id>}` so that the send
//! script, which touches several of them, stays in one Redis Cluster slot.
//! Global keys (chat-list indexes, node registry) are single-key operations.

/// Consumer group the workers share on every log shard.
pub const WORKER_GROUP: &str = "workers";
/// Field name of the envelope in every stream entry.
pub const FIELD: &str = "e";

#[derive(Debug, Clone, Default)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    fn conv(&self, conv: &str, suffix: &str) -> String {
        format!("{}{{c:{}}}:{}", self.prefix, conv, suffix)
    }

    // ---- per conversation (one slot)
    /// Hash: the conversation's hot state, read and written by every
    /// positioned script in one lookup: `n` (the last event position;
    /// message seqs included), `u`/`a` (the customer's username and avatar,
    /// copied from the profile for the log), `t` (when its TTL was last
    /// refreshed, ms) and `d:<client_id>` -> "seq:ts" for the messages of
    /// the recent window (dedupe). It expires with the replay stream after
    /// the conversation's last event; the next event seeds it again from
    /// the SQL record (see `gateway` `seed_conversation`).
    pub fn state(&self, conv: &str) -> String {
        self.conv(conv, "st")
    }
    /// Counter of the layout before the state hash (string, INCR): read
    /// once when a state is seeded, so an upgrade never numbers backwards.
    pub fn legacy_seq(&self, conv: &str) -> String {
        self.conv(conv, "seq")
    }
    /// Pub/sub channel of a conversation's live frames. The nodes holding
    /// its customer's sockets or agent sockets watching it subscribe; the
    /// scripts publish each event atomically with its position, so a node
    /// receives a conversation's events in position order.
    pub fn channel(&self, conv: &str) -> String {
        format!("{}{{c:{}}}", self.prefix, conv)
    }
    /// Stream of rendered frames, entry id `<pos>-0`, capped: what `resume` replays.
    pub fn replay(&self, conv: &str) -> String {
        self.conv(conv, "replay")
    }
    /// Hash seq -> "side|deleted|excerpt": who may edit it, and what a reply quotes.
    pub fn meta(&self, conv: &str) -> String {
        self.conv(conv, "meta")
    }
    /// Hash emoji -> count for one message.
    pub fn reactions(&self, conv: &str, seq: u64) -> String {
        self.conv(conv, &format!("rx:{seq}"))
    }
    /// Set of "kind:id:emoji" who reacted to one message (makes toggles idempotent).
    pub fn reactors(&self, conv: &str, seq: u64) -> String {
        self.conv(conv, &format!("rxw:{seq}"))
    }
    /// Hash of read state: customer_delivered, customer_seen, staff_delivered, staff_seen.
    pub fn read_state(&self, conv: &str) -> String {
        self.conv(conv, "rs")
    }
    /// Set of gateway node ids holding a socket of the conversation's customer.
    pub fn customer_nodes(&self, conv: &str) -> String {
        self.conv(conv, "nodes")
    }
    /// Hash: the chat-list row (customer_id, username, avatar_url, preview,
    /// last_ts, last_seq, unread), written by the worker.
    pub fn row(&self, conv: &str) -> String {
        self.conv(conv, "row")
    }
    /// Hash: the customer's profile and presence (username, avatar_url, last_seen).
    pub fn customer(&self, conv: &str) -> String {
        self.conv(conv, "cust")
    }
    /// Rate gate for relaying typing indicators of one person (key with a short TTL).
    pub fn typing_gate(&self, conv: &str, who: &str) -> String {
        self.conv(conv, &format!("ty:{who}"))
    }
    /// Short lock (token, PX) serialising the events of one order, so exactly
    /// one progress card is created and card updates land in order.
    pub fn order_lock(&self, conv: &str, order_id: &str) -> String {
        self.conv(conv, &format!("olock:{order_id}"))
    }

    // ---- global
    /// Random id that changes when Redis loses its state.
    pub fn epoch(&self) -> String {
        format!("{}epoch", self.prefix)
    }
    /// ZSET conversation id -> last activity (ms): the chat list.
    pub fn chats_all(&self) -> String {
        format!("{}chats:all", self.prefix)
    }
    /// ZSET of conversations with unread customer messages, by last activity.
    pub fn chats_unread(&self) -> String {
        format!("{}chats:unread", self.prefix)
    }
    /// ZSET (all scores 0) of "lowercase username\0conversation id", for prefix search.
    pub fn chats_names(&self) -> String {
        format!("{}chats:names", self.prefix)
    }
    /// Log shard `n` (stream), read by the worker group.
    pub fn log(&self, shard: u32) -> String {
        format!("{}log:{}", self.prefix, shard)
    }
    /// The staff stream: every frame for agent sockets (messages, typing,
    /// receipts, presence, chat-list rows, points), written once and read by
    /// every gateway node, which hands it to its agent sockets.
    pub fn staff_events(&self) -> String {
        format!("{}staff_events", self.prefix)
    }
    /// ZSET gateway node id -> its last heartbeat (Redis time, ms). The
    /// node keys share the hash tag `{nodes}` so that the heartbeat and
    /// claim scripts stay in one Cluster slot.
    pub fn nodes(&self) -> String {
        format!("{}{{nodes}}", self.prefix)
    }
    /// Short lock (owner, PX) held while a node's references are cleaned up.
    pub fn node_reap_lock(&self, node: &str) -> String {
        format!("{}{{nodes}}:reap:{}", self.prefix, node)
    }
    /// Marker (with a TTL) that a node was declared dead: if it is in fact
    /// alive, its next heartbeat finds it and the node closes its sockets.
    pub fn node_reaped(&self, node: &str) -> String {
        format!("{}{{nodes}}:reaped:{}", self.prefix, node)
    }
    /// SET of the conversations whose `customer_nodes` list this node.
    pub fn node_customers(&self, node: &str) -> String {
        format!("{}node:{}:customers", self.prefix, node)
    }
    /// Agent session token -> agent JSON, with a TTL.
    pub fn session(&self, token_hash: &str) -> String {
        format!("{}sess:{}", self.prefix, token_hash)
    }
    /// Single-use WebSocket ticket -> identity JSON, 30 s TTL.
    pub fn ticket(&self, ticket: &str) -> String {
        format!("{}ticket:{}", self.prefix, ticket)
    }
    /// Stream of points-action requests ([`crate::envelope::LoyaltyRequest`]),
    /// read by the worker group.
    pub fn loyalty(&self) -> String {
        format!("{}loyalty", self.prefix)
    }
    /// List the worker pushes one [`crate::envelope::LoyaltyReply`] to (short
    /// TTL); the requesting gateway waits on it with `BLPOP`.
    pub fn loyalty_reply(&self, request_id: &str) -> String {
        format!("{}loyalty:reply:{}", self.prefix, request_id)
    }
    /// Stream of entries the worker group could not process and did not
    /// drop (undecodable, an unknown envelope version, refused by the
    /// database, a position already taken by another message), capped.
    pub fn dead_letters(&self) -> String {
        format!("{}deadletter", self.prefix)
    }
    /// Counter for login attempts of one username or address, with a TTL.
    pub fn login_attempts(&self, who: &str) -> String {
        format!("{}rl:login:{}", self.prefix, who)
    }
}

/// Log shard of a conversation: a stable hash (FNV-1a) so every process agrees.
pub fn shard_of(conv: &str, shards: u32) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in conv.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h % shards.max(1)
}

/// Redis stream id of the replay entry for position `pos`.
pub fn replay_id(pos: u64) -> String {
    format!("{pos}-0")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn layout() {
        let k = Keys::new("t1:");
        assert_eq!(k.state("42"), "t1:{c:42}:st");
        assert_eq!(k.channel("42"), "t1:{c:42}");
        assert_eq!(k.replay("42"), "t1:{c:42}:replay");
        assert_eq!(k.nodes(), "t1:{nodes}");
        assert_eq!(k.node_reap_lock("g1"), "t1:{nodes}:reap:g1");
        assert_eq!(shard_of("42", 4), shard_of("42", 4));
        assert!(shard_of("x", 4) < 4);
    }
}

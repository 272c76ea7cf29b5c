//! Redis in and out: the per-conversation scripts (one round trip, one slot),
//! publishing to the log shards, node inboxes and the staff stream, and
//! reading this node's inbox and the staff stream.
//!
//! A conversation's frames go to the inboxes of the nodes holding its
//! customer's sockets (`{c:<id>}:nodes`) and of the nodes holding agent
//! sockets that watch it (`{c:<id>}:watchers`); the scripts return both sets
//! atomically with the position they assign. The staff stream carries only
//! what every agent gets: chat-list rows, presence and points.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::streams::{StreamRangeReply, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, Script, Value};
use schema::envelope::{self, Audience, LogEvent, Relay};
use schema::keys::{self, FIELD};

use crate::error::GatewayError;
use redis_conn::RedisConn;
use crate::registry::{Out, NO_FLOOR};
use crate::state::AppState;

/// A read returning at least this many entries starts the linger.
const LINGER_FROM: usize = 8;
/// Inbox entries kept per node (approximate).
pub const INBOX_LEN: usize = 10_000;

/// Replaces the first `"<field>":0,` placeholder of a rendered frame with the
/// value. Fields rendered before any user text, so the first match is the field.
pub const LUA_SUBST: &str = r#"
local function subst(f, field, v)
  local pat = '"' .. field .. '":0,'
  local a, b = string.find(f, pat, 1, true)
  if not a then return f end
  return string.sub(f, 1, a - 1) .. '"' .. field .. '":' .. v .. ',' .. string.sub(f, b + 1)
end
"#;

/// Keeps a conversation's hot state bounded: its replay stream and message
/// metadata expire `ttl` seconds after its last positioned event (an idle
/// conversation then costs Redis nothing but its sequence and chat-list row).
/// A client resuming later gets `complete: false` and reloads history; the
/// metadata of an older message is restored from the SQL record on demand.
pub const LUA_HOT: &str = r#"
local function hot(ttl, ...)
  for _, k in ipairs({...}) do redis.call('EXPIRE', k, ttl) end
end
"#;

/// KEYS: seq, dedupe, replay, meta, customer_nodes, customer, watchers[, log shard]
/// ARGV: ts, side, excerpt, frame, dedupe_ttl, replay_len, replay_ttl[, log head,
/// log tail, conversation id, customer relay head, staff relay head, inbox key
/// prefix, inbox length]
///
/// With the extra key (single Redis only: it is in another slot) the script
/// also publishes a new message: the log entry and the relay entries (every
/// node hosting the customer, every node with an agent watching it),
/// finished from the gateway's pre-encoded parts (`schema::envelope::split`).
///
/// The metadata of the message `replay_len` positions back is dropped, so an
/// active conversation keeps at most about as much metadata as replay.
const SEND: &str = r#"
if redis.call('EXISTS', KEYS[6]) == 0 then return {'NOCONV'} end
local d = redis.call('GET', KEYS[2])
if d then
  local i = string.find(d, ':', 1, true)
  return {'DUP', tonumber(string.sub(d, 1, i - 1)), tonumber(string.sub(d, i + 1)), {}, redis.call('HMGET', KEYS[6], 'username', 'avatar_url'), {}}
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOSEQ'} end
local seq = redis.call('INCR', KEYS[1])
local f = subst(subst(ARGV[4], 'pos', seq), 'seq', seq)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], seq .. '-0', 'f', f)
redis.call('SET', KEYS[2], seq .. ':' .. ARGV[1], 'EX', ARGV[5])
redis.call('HSET', KEYS[4], seq, ARGV[2] .. '|0|' .. ARGV[3])
if seq > tonumber(ARGV[6]) then redis.call('HDEL', KEYS[4], seq - tonumber(ARGV[6])) end
hot(ARGV[7], KEYS[3], KEYS[4])
local nodes = redis.call('SMEMBERS', KEYS[5])
local prof = redis.call('HMGET', KEYS[6], 'username', 'avatar_url')
local watchers = redis.call('HKEYS', KEYS[7])
if KEYS[8] then
  local av = prof[2]
  if av == '' then av = false end
  redis.call('XADD', KEYS[8], '*', 'e', ARGV[8] .. vs(prof[1] or ARGV[10]) .. vopt(av) .. vu(seq) .. ARGV[9])
  local body = vu(seq) .. vs(f)
  for _, n in ipairs(nodes) do
    redis.call('XADD', ARGV[13] .. n, 'MAXLEN', '~', ARGV[14], '*', 'e', ARGV[11] .. body)
  end
  for _, n in ipairs(watchers) do
    redis.call('XADD', ARGV[13] .. n, 'MAXLEN', '~', ARGV[14], '*', 'e', ARGV[12] .. body)
  end
end
return {'OK', seq, tonumber(ARGV[1]), nodes, prof, watchers}
"#;

/// Parses a meta value "side|deleted|excerpt".
const LUA_META: &str = r#"
local function meta(m)
  local p1 = string.find(m, '|', 1, true)
  local p2 = string.find(m, '|', p1 + 1, true)
  return string.sub(m, 1, p1 - 1), string.sub(m, p1 + 1, p2 - 1), string.sub(m, p2 + 1)
end
"#;

/// Edit or delete. KEYS: seq, replay, meta, customer_nodes, watchers
/// ARGV: target seq, side, mode (edit|delete), excerpt, frame, replay_len, replay_ttl
const MUTATE: &str = r#"
local m = redis.call('HGET', KEYS[3], ARGV[1])
if not m then return {'NOTFOUND'} end
local side, del = meta(m)
if del == '1' then return {'DELETED'} end
if side ~= ARGV[2] then return {'FORBIDDEN', side} end
local pos = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], pos .. '-0', 'f', subst(ARGV[5], 'pos', pos))
if ARGV[3] == 'delete' then
  redis.call('HSET', KEYS[3], ARGV[1], side .. '|1|')
else
  redis.call('HSET', KEYS[3], ARGV[1], side .. '|0|' .. ARGV[4])
end
hot(ARGV[7], KEYS[2], KEYS[3])
return {'OK', pos, redis.call('SMEMBERS', KEYS[4]), redis.call('HKEYS', KEYS[5])}
"#;

/// KEYS: seq, replay, meta, customer_nodes, reactions, reactors, watchers
/// ARGV: target seq, reactor member, emoji, on (1|0), frame, replay_len, replay_ttl
const REACT: &str = r#"
local m = redis.call('HGET', KEYS[3], ARGV[1])
if not m then return {'NOTFOUND'} end
local side, del = meta(m)
if del == '1' then return {'DELETED'} end
local changed
if ARGV[4] == '1' then changed = redis.call('SADD', KEYS[6], ARGV[2]) else changed = redis.call('SREM', KEYS[6], ARGV[2]) end
if changed == 1 then
  local n = redis.call('HINCRBY', KEYS[5], ARGV[3], ARGV[4] == '1' and 1 or -1)
  if n <= 0 then redis.call('HDEL', KEYS[5], ARGV[3]) end
end
local flat = redis.call('HGETALL', KEYS[5])
local parts = {}
for i = 1, #flat, 2 do table.insert(parts, '"' .. flat[i] .. '":' .. flat[i + 1]) end
table.sort(parts)
local rx = '{' .. table.concat(parts, ',') .. '}'
if changed == 0 then return {'NOOP', 0, rx} end
local pos = redis.call('INCR', KEYS[1])
local f = subst(ARGV[5], 'pos', pos)
local a, b = string.find(f, '"reactions":{},', 1, true)
if a then f = string.sub(f, 1, a - 1) .. '"reactions":' .. rx .. ',' .. string.sub(f, b + 1) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], pos .. '-0', 'f', f)
hot(ARGV[7], KEYS[2], KEYS[3])
return {'OK', pos, rx, redis.call('SMEMBERS', KEYS[4]), redis.call('HKEYS', KEYS[7])}
"#;

/// Monotonic read state. KEYS: read_state, seq, customer_nodes, watchers
/// ARGV: side, delivered, seen
const READ: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local d = tonumber(ARGV[2])
local s = tonumber(ARGV[3])
if d > cur or s > cur then return {'AHEAD', cur} end
local fd = ARGV[1] .. '_delivered'
local fs = ARGV[1] .. '_seen'
local od = tonumber(redis.call('HGET', KEYS[1], fd) or '0')
local os = tonumber(redis.call('HGET', KEYS[1], fs) or '0')
local changed = 0
if s > os then os = s; changed = 1; redis.call('HSET', KEYS[1], fs, os) end
local nd = math.max(od, d, os)
if nd > od then changed = 1; redis.call('HSET', KEYS[1], fd, nd) end
return {'OK', nd, os, changed, redis.call('SMEMBERS', KEYS[3]), redis.call('HKEYS', KEYS[4])}
"#;

/// An agent socket on node ARGV[1] stops watching: one fewer watcher there,
/// and the node leaves the hash at zero (atomic, so a concurrent watch on
/// the same node is never erased). KEYS: watchers
const UNWATCH: &str = r#"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return {n}
"#;

pub struct Scripts {
    pub send: Script,
    pub mutate: Script,
    pub react: Script,
    pub read: Script,
    pub unwatch: Script,
    send_src: String,
    mutate_src: String,
    react_src: String,
    read_src: String,
}

impl Default for Scripts {
    fn default() -> Self {
        let send_src = format!("{LUA_SUBST}{LUA_HOT}{}{SEND}", schema::envelope::split::LUA_BINCODE);
        let mutate_src = format!("{LUA_SUBST}{LUA_HOT}{LUA_META}{MUTATE}");
        let react_src = format!("{LUA_SUBST}{LUA_HOT}{LUA_META}{REACT}");
        let read_src = READ.to_string();
        Self {
            send: Script::new(&send_src),
            mutate: Script::new(&mutate_src),
            react: Script::new(&react_src),
            read: Script::new(&read_src),
            unwatch: Script::new(UNWATCH),
            send_src,
            mutate_src,
            react_src,
            read_src,
        }
    }
}

/// Keys and arguments of one script call.
#[derive(Default)]
pub struct Call {
    keys: Vec<String>,
    args: Vec<Vec<u8>>,
}

impl Call {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn key(mut self, k: String) -> Self {
        self.keys.push(k);
        self
    }
    pub fn arg<T: redis::ToRedisArgs>(mut self, a: T) -> Self {
        self.args.extend(a.to_redis_args());
        self
    }
}

/// Runs one of [`Scripts`] on a conversation's slot.
pub async fn eval(state: &AppState, script: &Script, call: &Call) -> Result<Vec<Value>, GatewayError> {
    eval_source(state, script, script_source(state, script), call).await
}

/// Runs a script on a conversation's slot: `EVALSHA` first; when the server
/// does not know the script (restart, another cluster node), `EVAL` with
/// `source`, which also caches it.
pub async fn eval_source(state: &AppState, script: &Script, source: &str, call: &Call) -> Result<Vec<Value>, GatewayError> {
    let started = Instant::now();
    let mut conn = state.redis();
    for attempt in 0..2 {
        let mut pipe = redis::pipe();
        // EVALSHA first; when the server does not know the script (restart,
        // another cluster node), EVAL with the source, which also caches it.
        if attempt == 0 {
            pipe.cmd("EVALSHA").arg(script.get_hash());
        } else {
            pipe.cmd("EVAL").arg(source);
        }
        pipe.arg(call.keys.len()).arg(&call.keys).arg(&call.args);
        match pipe.query_async::<(Vec<Value>,)>(&mut conn).await {
            Ok((r,)) => {
                metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "script").record(started.elapsed().as_secs_f64());
                return Ok(r);
            }
            Err(e) if e.kind() == redis::ErrorKind::NoScriptError && attempt == 0 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(GatewayError::client(schema::frames::ErrorCode::Unavailable, "script could not be loaded"))
}

fn script_source<'a>(state: &'a AppState, script: &Script) -> &'a str {
    let s = &state.scripts;
    let h = script.get_hash();
    if h == s.send.get_hash() {
        &s.send_src
    } else if h == s.mutate.get_hash() {
        &s.mutate_src
    } else if h == s.react.get_hash() {
        &s.react_src
    } else if h == s.unwatch.get_hash() {
        UNWATCH
    } else {
        &s.read_src
    }
}

/// Replaces a `"field":0,` placeholder locally, as the scripts do.
pub fn subst(frame: &str, field: &str, v: u64) -> String {
    let pat = format!("\"{field}\":0,");
    match frame.find(&pat) {
        Some(i) => format!("{}\"{field}\":{v},{}", &frame[..i], &frame[i + pat.len()..]),
        None => frame.to_string(),
    }
}

// ------------------------------------------------------------------ values from scripts

pub fn status(v: &[Value]) -> String {
    match v.first() {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    }
}

pub fn int_at(v: &[Value], i: usize) -> i64 {
    match v.get(i) {
        Some(Value::Int(n)) => *n,
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).parse().unwrap_or(0),
        _ => 0,
    }
}

pub fn str_at(v: &[Value], i: usize) -> String {
    match v.get(i) {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(Value::SimpleString(s)) => s.clone(),
        _ => String::new(),
    }
}

pub fn strings_at(v: &[Value], i: usize) -> Vec<String> {
    opt_strings_at(v, i).into_iter().flatten().collect()
}

/// An array of optional strings (nil stays `None`, position kept).
pub fn opt_strings_at(v: &[Value], i: usize) -> Vec<Option<String>> {
    match v.get(i) {
        Some(Value::Array(items)) | Some(Value::Set(items)) => items
            .iter()
            .map(|x| match x {
                Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

// ------------------------------------------------------------------ publishing

/// The nodes a conversation's frame goes to: those holding the customer's
/// sockets, and those holding agent sockets that watch the conversation.
#[derive(Debug, Default, Clone)]
pub struct Targets {
    pub customers: Vec<String>,
    pub watchers: Vec<String>,
}

impl Targets {
    /// From a script's reply: the customer nodes at `i`, the watcher nodes at `j`.
    pub fn at(v: &[Value], i: usize, j: usize) -> Self {
        Self { customers: strings_at(v, i), watchers: strings_at(v, j) }
    }
}

/// What one publish call sends.
pub struct Publish<'a> {
    pub log: Option<&'a LogEvent>,
    /// A conversation's frame and the nodes it goes to (by its audience).
    pub relay: Option<(&'a Relay, &'a Targets)>,
}

/// One pipelined round trip: the log shard entry for the workers, and the
/// relay entry into the inbox of every node that holds a recipient: the
/// customer's sockets (customer side), agent sockets watching the
/// conversation (staff side), one entry per node carrying the sides it serves.
pub async fn publish(state: &AppState, p: Publish<'_>) -> Result<(), GatewayError> {
    let mut pipe = redis::pipe();
    if let Some(ev) = p.log {
        let shard = keys::shard_of(ev.conversation(), state.cfg.log_shards);
        pipe.cmd("XADD").arg(state.keys.log(shard)).arg("*").arg(FIELD).arg(envelope::encode(ev)).ignore();
    }
    if let Some((relay, targets)) = p.relay {
        let to_customer = matches!(relay.audience, Audience::Customer | Audience::Both);
        let to_staff = matches!(relay.audience, Audience::Staff | Audience::Both);
        // (node, customer side, staff side); a handful of nodes at most.
        let mut per_node: Vec<(&str, bool, bool)> = Vec::new();
        let customers = targets.customers.iter().filter(|_| to_customer).map(|n| (n, true));
        let watchers = targets.watchers.iter().filter(|_| to_staff).map(|n| (n, false));
        for (n, customer) in customers.chain(watchers) {
            match per_node.iter_mut().find(|(x, _, _)| *x == n.as_str()) {
                Some(e) if customer => e.1 = true,
                Some(e) => e.2 = true,
                None => per_node.push((n.as_str(), customer, !customer)),
            }
        }
        let mut encoded: [Option<Vec<u8>>; 3] = [None, None, None];
        for (node, c, s) in per_node {
            let (slot, audience) = match (c, s) {
                (true, true) => (0, Audience::Both),
                (true, false) => (1, Audience::Customer),
                _ => (2, Audience::Staff),
            };
            let bytes = encoded[slot].get_or_insert_with(|| {
                envelope::encode(&Relay { audience, conversation: relay.conversation.clone(), pos: relay.pos, frame: relay.frame.clone() })
            });
            redis_conn::xadd_capped(&mut pipe, &state.keys.inbox(node), INBOX_LEN, FIELD, bytes);
        }
    }
    let started = Instant::now();
    let mut conn = state.redis();
    pipe.query_async::<()>(&mut conn).await?;
    metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "publish").record(started.elapsed().as_secs_f64());
    Ok(())
}

/// Relays an unpositioned frame of a conversation (typing, receipt) to one
/// side: the customer's nodes, or the nodes of agents watching it. Nothing
/// is written when nobody there would receive it.
pub async fn relay_frame(state: &AppState, audience: Audience, conv: &str, frame: String) -> Result<(), GatewayError> {
    let mut conn = state.redis();
    let mut targets = Targets::default();
    if matches!(audience, Audience::Customer | Audience::Both) {
        targets.customers = conn.smembers(state.keys.customer_nodes(conv)).await?;
    }
    if matches!(audience, Audience::Staff | Audience::Both) {
        targets.watchers = conn.hkeys(state.keys.watchers(conv)).await?;
    }
    if targets.customers.is_empty() && targets.watchers.is_empty() {
        return Ok(());
    }
    let relay = Relay { audience, conversation: Some(conv.to_string()), pos: 0, frame };
    publish(state, Publish { log: None, relay: Some((&relay, &targets)) }).await
}

/// Sends a frame to every agent socket of every node (presence, points):
/// one entry in the staff stream, which every node reads.
pub async fn relay_to_all_staff(state: &AppState, conv: &str, frame: String) -> Result<(), GatewayError> {
    let relay = Relay { audience: Audience::Staff, conversation: Some(conv.to_string()), pos: 0, frame };
    let mut pipe = redis::pipe();
    redis_conn::xadd_capped(&mut pipe, &state.keys.staff_events(), schema::limits::STAFF_EVENTS_LEN, FIELD, &envelope::encode(&relay));
    let started = Instant::now();
    let mut conn = state.redis();
    pipe.query_async::<()>(&mut conn).await?;
    metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "publish").record(started.elapsed().as_secs_f64());
    Ok(())
}

/// Hands a relayed frame to this node's sockets. `floor`: see [`Out::Event`].
/// `all_staff`: the frame came from the staff stream and is for every agent
/// socket; otherwise its staff side is for the agents watching its conversation.
pub fn deliver(state: &AppState, relay: Relay, received: Instant, floor: u64, all_staff: bool) {
    let frame: Arc<str> = Arc::from(relay.frame);
    let conv: Option<Arc<str>> = relay.conversation.map(Arc::from);
    let make = || match (&conv, relay.pos) {
        (Some(c), p) if p > 0 => Out::Event { conv: c.clone(), pos: p, frame: frame.clone(), floor },
        _ => Out::Frame(frame.clone()),
    };
    if matches!(relay.audience, Audience::Staff | Audience::Both) {
        if all_staff {
            state.registry.for_agents(|h| {
                h.push(make());
            });
        } else if let Some(c) = &conv {
            state.registry.for_watchers(c, |h| {
                h.push(make());
            });
        }
    }
    if matches!(relay.audience, Audience::Customer | Audience::Both) {
        if let Some(c) = &conv {
            state.registry.for_customer(c, |h| {
                h.push(make());
            });
        }
    }
    metrics::histogram!(crate::metrics::RELAY_SECONDS).record(received.elapsed().as_secs_f64());
}

/// Reads this node's inbox (frames for its customer sockets and for its
/// agent sockets watching a conversation) and the staff stream (chat-list
/// rows, presence and points, for every agent socket) until shutdown: with one `XREAD`
/// over both streams, or, on a Redis Cluster (where the two keys live in
/// different slots), one loop per stream.
pub async fn relay_loops(state: AppState) {
    let inbox = state.keys.inbox(&state.node);
    let staff = state.keys.staff_events();
    if state.redis_target.is_cluster() {
        let other = tokio::spawn(stream_loop(state.clone(), vec![staff]));
        stream_loop(state, vec![inbox]).await;
        other.abort();
    } else {
        stream_loop(state, vec![inbox, staff]).await;
    }
}

/// Reads relay streams from their current ends until shutdown, handing every
/// entry to this node's sockets, on its own connection because `XREAD BLOCK`
/// would stall a shared multiplexed one.
async fn stream_loop(state: AppState, keys: Vec<String>) {
    // "$": not started yet (start after whatever is there now: nothing older is for our sockets).
    let mut last_ids: Vec<String> = vec![String::from("$"); keys.len()];
    // Per stream: the highest position relayed per conversation. Two sends
    // to one conversation from different nodes can be published in the
    // opposite order of their positions; a socket that meets the
    // conversation for the first time with the later one must still get the
    // earlier one (from the replay stream) before it: what lies between
    // this and the event's position is in flight, hence after the socket.
    let mut relayed: Vec<HashMap<String, u64>> = vec![HashMap::new(); keys.len()];
    let mut shutdown = state.shutdown.clone();
    let mut backoff = Duration::from_millis(100);
    let linger = Duration::from_micros(state.cfg.inbox_linger_us);
    let staff_key = state.keys.staff_events();
    loop {
        if *shutdown.borrow() {
            return;
        }
        // BLOCK 1000 plus slack: a Redis that stops answering is noticed in seconds.
        let mut conn = match state.redis_target.connect(Duration::from_millis(3000)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "relay streams: cannot connect to redis");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        for (key, last_id) in keys.iter().zip(last_ids.iter_mut()) {
            if last_id == "$" {
                let id: Result<Vec<(String, Value)>, _> = conn.xrevrange_count(key, "+", "-", 1).await;
                *last_id = match id {
                    Ok(v) => v.first().map(|(id, _)| id.clone()).unwrap_or_else(|| "0-0".into()),
                    Err(_) => "0-0".into(),
                };
            }
        }
        backoff = Duration::from_millis(100);
        loop {
            let opts = StreamReadOptions::default().block(1000).count(1024);
            let read = tokio::select! {
                r = conn.xread_options::<_, _, StreamReadReply>(&keys, &last_ids, &opts) => r,
                _ = shutdown.changed() => return,
            };
            match read {
                Ok(reply) => {
                    let received = Instant::now();
                    let mut full = false;
                    let mut got = 0;
                    for k in reply.keys {
                        metrics::histogram!(crate::metrics::INBOX_BATCH).record(k.ids.len() as f64);
                        full |= k.ids.len() >= 1024;
                        got += k.ids.len();
                        let Some(i) = keys.iter().position(|x| *x == k.key) else { continue };
                        for entry in k.ids {
                            last_ids[i] = entry.id.clone();
                            let Some(Value::BulkString(bytes)) = entry.map.get(FIELD) else { continue };
                            match envelope::decode::<Relay>(bytes) {
                                Ok(relay) => {
                                    let floor = match (&relay.conversation, relay.pos) {
                                        (Some(c), p) if p > 0 => note_relayed(&mut relayed[i], c, p),
                                        _ => NO_FLOOR,
                                    };
                                    deliver(&state, relay, received, floor, keys[i] == staff_key)
                                }
                                Err(e) => tracing::warn!(error = %e, "relay streams: undecodable entry skipped"),
                            }
                        }
                    }
                    // Entries arriving faster than one per read (a busy node):
                    // wait so that the next read gathers more. A quiet node
                    // reads again at once, so light traffic pays no latency.
                    if !full && got >= LINGER_FROM && linger > Duration::ZERO {
                        tokio::time::sleep(linger).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay streams: read failed, reconnecting");
                    tokio::time::sleep(backoff).await;
                    break;
                }
            }
        }
    }
}

/// Records that `pos` of `conv` was relayed; returns the highest position
/// relayed before it ([`NO_FLOOR`] when none since this node started).
fn note_relayed(seen: &mut HashMap<String, u64>, conv: &str, pos: u64) -> u64 {
    // Bounded: forgetting only turns the floor back to "unknown".
    const MAX_CONVERSATIONS: usize = 1_000_000;
    if let Some(m) = seen.get_mut(conv) {
        let before = *m;
        *m = before.max(pos);
        return before;
    }
    if seen.len() >= MAX_CONVERSATIONS {
        seen.clear();
    }
    seen.insert(conv.to_string(), pos);
    NO_FLOOR
}

/// Replay entries of a conversation with positions in `from..=to` (at most `limit`).
pub async fn replay_range(
    conn: &mut RedisConn,
    key: &str,
    from: u64,
    to: Option<u64>,
    limit: usize,
) -> Result<Vec<(u64, String)>, redis::RedisError> {
    let end = to.map(keys::replay_id).unwrap_or_else(|| "+".to_string());
    let reply: StreamRangeReply = conn.xrange_count(key, keys::replay_id(from), end, limit).await?;
    Ok(reply
        .ids
        .into_iter()
        .filter_map(|e| {
            let pos = e.id.split('-').next()?.parse().ok()?;
            let frame = match e.map.get("f")? {
                Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
                _ => return None,
            };
            Some((pos, frame))
        })
        .collect())
}

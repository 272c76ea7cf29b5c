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
use redis::{AsyncCommands, Value};
pub use redis_conn::{Call, LuaScript};
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

/// Keeps a conversation's hot state bounded: its replay stream, message
/// metadata overrides and state hash expire `ttl` seconds after its last
/// positioned event (an idle conversation then costs Redis nothing but its
/// chat-list row and profile). A client resuming later gets `complete:
/// false` and reloads history; the state is seeded again from the SQL
/// record; the metadata of an older message is restored from it on demand.
pub const LUA_HOT: &str = r#"
local function hot(ttl, ...)
  for _, k in ipairs({...}) do redis.call('EXPIRE', k, ttl) end
end
"#;

/// The metadata "side|deleted|excerpt" of message `seq`: the override hash
/// (edits, deletes, restored from SQL) first, then the message's own replay
/// entry (field `m`). Nil when neither has it (the gateway restores it from
/// the record and runs the script again).
const LUA_META: &str = r#"
local function meta_of(meta_key, replay_key, seq)
  local m = redis.call('HGET', meta_key, seq)
  if m then return m end
  local e = redis.call('XRANGE', replay_key, seq .. '-0', seq .. '-0')
  if #e == 0 then return nil end
  local f = e[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'm' then return f[i + 1] end
  end
  return nil
end
local function meta(m)
  local p1 = string.find(m, '|', 1, true)
  local p2 = string.find(m, '|', p1 + 1, true)
  return string.sub(m, 1, p1 - 1), string.sub(m, p1 + 1, p2 - 1), string.sub(m, p2 + 1)
end
"#;

/// Send a message: dedupe, number, keep, publish, log, in one call and
/// about six Redis commands (BENCHMARKS.md, session 11).
///
/// KEYS: state, replay[, log shard (single Redis only: another slot)]
/// ARGV: client_id, ts, meta ("side|0|excerpt"), frame template, replay_len,
/// ttl_ms, channel, log envelope, dedupe window
///
/// The frame is stored and published as rendered by the gateway, with
/// `"pos":0,` and `"seq":0,` placeholders: readers of the replay stream and
/// subscribers fill them from the position (`subst_position`), which costs
/// Lua nothing. The TTLs are refreshed at most once per hundredth of the
/// TTL, and the dedupe entries older than the window are dropped every 256
/// messages, so a conversation's state stays bounded by its window.
const SEND: &str = r#"
local dk = 'd:' .. ARGV[1]
local st = redis.call('HMGET', KEYS[1], 'n', 'u', 'a', 't', dk)
if not st[1] then return {'NOSTATE'} end
if st[5] then
  local i = string.find(st[5], ':', 1, true)
  return {'DUP', tonumber(string.sub(st[5], 1, i - 1)), tonumber(string.sub(st[5], i + 1)), st[2] or '', st[3] or ''}
end
local seq = tonumber(st[1]) + 1
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[6])
local sid = seq .. '-0'
if now - tonumber(st[4] or '0') > ttl / 100 then
  redis.call('HSET', KEYS[1], 'n', seq, dk, seq .. ':' .. ARGV[2], 't', now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], sid, 'f', ARGV[4], 'm', ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ttl)
else
  redis.call('HSET', KEYS[1], 'n', seq, dk, seq .. ':' .. ARGV[2])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], sid, 'f', ARGV[4], 'm', ARGV[3])
end
if KEYS[3] then redis.call('XADD', KEYS[3], '*', 'e', ARGV[8], 's', seq, 'u', st[2] or '', 'a', st[3] or '') end
redis.call('PUBLISH', ARGV[7], 'B' .. seq .. ' ' .. ARGV[4])
if seq % 256 == 0 then
  local w = tonumber(ARGV[9])
  local all = redis.call('HGETALL', KEYS[1])
  local old = {}
  for i = 1, #all, 2 do
    local k = all[i]
    if string.byte(k, 1) == 100 and string.byte(k, 2) == 58 then
      local v = all[i + 1]
      if tonumber(string.sub(v, 1, string.find(v, ':', 1, true) - 1)) <= seq - w then old[#old + 1] = k end
    end
  end
  for i = 1, #old, 1000 do redis.call('HDEL', KEYS[1], unpack(old, i, math.min(i + 999, #old))) end
end
return {'OK', seq, now, st[2] or '', st[3] or ''}
"#;

/// Edit or delete. KEYS: state, replay, meta
/// ARGV: target seq, side, mode (edit|delete), excerpt, frame, replay_len, replay_ttl, channel
const MUTATE: &str = r#"
local m = meta_of(KEYS[3], KEYS[2], ARGV[1])
if not m then return {'NOTFOUND'} end
local side, del = meta(m)
if del == '1' then return {'DELETED'} end
if side ~= ARGV[2] then return {'FORBIDDEN', side} end
if redis.call('HEXISTS', KEYS[1], 'n') == 0 then return {'NOSTATE'} end
local pos = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], pos .. '-0', 'f', ARGV[5])
if ARGV[3] == 'delete' then
  redis.call('HSET', KEYS[3], ARGV[1], side .. '|1|')
else
  redis.call('HSET', KEYS[3], ARGV[1], side .. '|0|' .. ARGV[4])
end
hot(ARGV[7], KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[8], 'B' .. pos .. ' ' .. ARGV[5])
return {'OK', pos}
"#;

/// KEYS: state, replay, meta, reactions, reactors
/// ARGV: target seq, reactor member, emoji, on (1|0), frame, replay_len, replay_ttl, channel
const REACT: &str = r#"
local m = meta_of(KEYS[3], KEYS[2], ARGV[1])
if not m then return {'NOTFOUND'} end
local side, del = meta(m)
if del == '1' then return {'DELETED'} end
if redis.call('HEXISTS', KEYS[1], 'n') == 0 then return {'NOSTATE'} end
local changed
if ARGV[4] == '1' then changed = redis.call('SADD', KEYS[5], ARGV[2]) else changed = redis.call('SREM', KEYS[5], ARGV[2]) end
if changed == 1 then
  local n = redis.call('HINCRBY', KEYS[4], ARGV[3], ARGV[4] == '1' and 1 or -1)
  if n <= 0 then redis.call('HDEL', KEYS[4], ARGV[3]) end
end
local flat = redis.call('HGETALL', KEYS[4])
local parts = {}
for i = 1, #flat, 2 do table.insert(parts, '"' .. flat[i] .. '":' .. flat[i + 1]) end
table.sort(parts)
local rx = '{' .. table.concat(parts, ',') .. '}'
if changed == 0 then return {'NOOP', 0, rx} end
local pos = redis.call('HINCRBY', KEYS[1], 'n', 1)
local f = ARGV[5]
local a, b = string.find(f, '"reactions":{},', 1, true)
if a then f = string.sub(f, 1, a - 1) .. '"reactions":' .. rx .. ',' .. string.sub(f, b + 1) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], pos .. '-0', 'f', f)
hot(ARGV[7], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('PUBLISH', ARGV[8], 'B' .. pos .. ' ' .. f)
return {'OK', pos, rx}
"#;

/// Monotonic read state. KEYS: read_state, state
/// ARGV: side, delivered, seen
const READ: &str = r#"
local cur = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
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
return {'OK', nd, os, changed}
"#;

/// The conversation scripts (one slot each), run with [`eval`].
pub struct Scripts {
    pub send: LuaScript,
    pub mutate: LuaScript,
    pub react: LuaScript,
    pub read: LuaScript,
    pub card_update: LuaScript,
}

/// A card update takes a position like an edit. KEYS: state, replay.
/// ARGV: frame, replay_len, replay_ttl, channel.
const CARD_UPDATE: &str = r#"
if redis.call('HEXISTS', KEYS[1], 'n') == 0 then return {'NOSTATE'} end
local pos = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], pos .. '-0', 'f', ARGV[1])
hot(ARGV[3], KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[4], 'B' .. pos .. ' ' .. ARGV[1])
return {'OK', pos}
"#;

impl Default for Scripts {
    fn default() -> Self {
        Self {
            send: LuaScript::new("send", SEND),
            mutate: LuaScript::with_prelude("mutate", &[LUA_HOT, LUA_META], MUTATE),
            react: LuaScript::with_prelude("react", &[LUA_HOT, LUA_META], REACT),
            read: LuaScript::new("read", READ),
            card_update: LuaScript::with_prelude("card_update", &[LUA_HOT], CARD_UPDATE),
        }
    }
}

/// Runs a script (on a conversation's slot, or the node registry's).
pub async fn eval(state: &AppState, script: &LuaScript, call: &Call) -> Result<Vec<Value>, GatewayError> {
    let started = Instant::now();
    let mut conn = state.redis();
    let r: Vec<Value> = script.run(&mut conn, call).await?;
    metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "script").record(started.elapsed().as_secs_f64());
    Ok(r)
}

/// Fills the `"pos":0,` and `"seq":0,` placeholders of a stored or published
/// frame template from its position (a message's seq is its position; other
/// frames have no `"seq":0,`: their `seq` names an earlier message).
pub fn subst_position(template: &str, pos: u64) -> String {
    let f = subst(template, "pos", pos);
    subst(&f, "seq", pos)
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

/// A live frame on a conversation's channel: `<audience><pos> <frame>`
/// (`B12 {...}`; audience `C` customer, `S` staff, `B` both; pos 0 for
/// unpositioned frames, whose frame is final; a positioned frame is a
/// template, see [`subst_position`]). Built in the scripts for positioned
/// events, here for the rest.
pub fn payload(audience: Audience, pos: u64, frame: &str) -> String {
    let a = match audience {
        Audience::Customer => 'C',
        Audience::Staff => 'S',
        Audience::Both => 'B',
    };
    format!("{a}{pos} {frame}")
}

/// Reads a channel payload back into a relay of `conv` (positioned frames filled in).
pub fn parse_payload(conv: &str, bytes: &[u8]) -> Option<Relay> {
    let s = std::str::from_utf8(bytes).ok()?;
    let audience = match s.as_bytes().first()? {
        b'C' => Audience::Customer,
        b'S' => Audience::Staff,
        b'B' => Audience::Both,
        _ => return None,
    };
    let sp = s.find(' ')?;
    let pos: u64 = s.get(1..sp)?.parse().ok()?;
    let body = &s[sp + 1..];
    let frame = if pos > 0 { subst_position(body, pos) } else { body.to_string() };
    Some(Relay { audience, conversation: Some(conv.to_string()), pos, frame })
}

/// What one publish call sends.
pub struct Publish<'a> {
    pub log: Option<&'a LogEvent>,
    /// An unpositioned frame of a conversation for its channel (receipts).
    pub relay: Option<&'a Relay>,
}

/// One pipelined round trip: the log shard entry for the workers, and the
/// frame on the conversation's channel (the nodes with a recipient are
/// subscribed to it).
pub async fn publish(state: &AppState, p: Publish<'_>) -> Result<(), GatewayError> {
    let mut pipe = redis::pipe();
    if let Some(ev) = p.log {
        let shard = keys::shard_of(ev.conversation(), state.cfg.log_shards);
        pipe.cmd("XADD").arg(state.keys.log(shard)).arg("*").arg(FIELD).arg(envelope::encode(ev)).ignore();
    }
    if let Some(relay) = p.relay {
        if let Some(conv) = &relay.conversation {
            pipe.cmd("PUBLISH").arg(state.keys.channel(conv)).arg(payload(relay.audience, relay.pos, &relay.frame)).ignore();
        }
    }
    let started = Instant::now();
    let mut conn = state.redis();
    pipe.query_async::<()>(&mut conn).await?;
    metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "publish").record(started.elapsed().as_secs_f64());
    Ok(())
}

/// Relays an unpositioned frame of a conversation (typing, receipt) to one
/// side: one `PUBLISH` on its channel, which Redis drops when no node is
/// subscribed (nobody would receive it).
pub async fn relay_frame(state: &AppState, audience: Audience, conv: &str, frame: String) -> Result<(), GatewayError> {
    let mut conn = state.redis();
    let started = Instant::now();
    let _: i64 = conn.publish(state.keys.channel(conv), payload(audience, 0, &frame)).await?;
    metrics::histogram!(crate::metrics::REDIS_SECONDS, "op" => "publish").record(started.elapsed().as_secs_f64());
    Ok(())
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

/// Reads the staff stream (chat-list rows, presence and points, for every
/// agent socket) until shutdown. Conversation frames come by pub/sub
/// ([`crate::subs`]).
pub async fn relay_loops(state: AppState) {
    let staff = state.keys.staff_events();
    stream_loop(state, vec![staff]).await;
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
pub fn note_relayed(seen: &mut HashMap<String, u64>, conv: &str, pos: u64) -> u64 {
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
                Value::BulkString(b) => std::str::from_utf8(b).ok()?,
                _ => return None,
            };
            Some((pos, subst_position(frame, pos)))
        })
        .collect())
}

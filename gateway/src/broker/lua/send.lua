-- A new message: dedupe, number, keep, publish and (single Redis) log, in
-- one call of about six Redis commands (BENCHMARKS.md, session 11).
-- KEYS: state, replay[, log shard (single Redis only: another slot)]
-- ARGV: dedupe scope (client_id scoped by sender: messages::dedupe_scope), ts, meta ("side|0|excerpt"), frame template, replay_len,
--   ttl_ms, channel, log envelope, dedupe window
-- Reply (broker::replies::SendReply):
--   {'OK'|'DUP', seq, ts, username, avatar_url} | {'NOSTATE'}
-- The frame is kept and published as the gateway rendered it, with its
-- `"pos":0,` and `"seq":0,` placeholders: replay readers and subscribers
-- fill them from the position (broker::template::subst_position), which
-- costs Lua nothing. The log entry carries the envelope with seq 0 and no
-- profile; the fields `s`, `u`, `a` complete it (worker: stream::Numbered).
-- The TTLs are refreshed at most once per hundredth of the TTL, and the
-- dedupe entries older than the window are dropped every 256 messages, so a
-- conversation's state stays bounded by its window.
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

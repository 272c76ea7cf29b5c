-- A new message. Preludes: subst, hot, meta.
-- KEYS: seq, dedupe, replay, meta, customer_nodes, customer, watchers
-- ARGV: ts, side, excerpt, frame, dedupe_ttl, replay_len, replay_ttl
-- Reply (broker::replies::SendReply):
--   {'OK'|'DUP', seq, ts, customer nodes, {username, avatar_url}, watcher nodes}
--   {'NOCONV'} | {'NOSEQ'}
-- The metadata of the message `replay_len` positions back is dropped, so an
-- active conversation keeps at most about as much metadata as replay.
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
redis.call('HSET', KEYS[4], seq, meta_value(ARGV[2], false, ARGV[3]))
if seq > tonumber(ARGV[6]) then redis.call('HDEL', KEYS[4], seq - tonumber(ARGV[6])) end
hot(ARGV[7], KEYS[3], KEYS[4])
local nodes = redis.call('SMEMBERS', KEYS[5])
local prof = redis.call('HMGET', KEYS[6], 'username', 'avatar_url')
local watchers = redis.call('HKEYS', KEYS[7])
return {'OK', seq, tonumber(ARGV[1]), nodes, prof, watchers}

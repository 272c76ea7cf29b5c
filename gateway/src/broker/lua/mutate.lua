-- Edit or delete. Preludes: subst, hot, meta.
-- KEYS: seq, replay, meta, customer_nodes, watchers
-- ARGV: target seq, side, mode (edit|delete), excerpt, frame, replay_len, replay_ttl
-- Reply (MutateReply): {'OK', pos, customer nodes, watcher nodes}
--   | {'NOTFOUND'} | {'DELETED'} | {'FORBIDDEN', side}
local m = redis.call('HGET', KEYS[3], ARGV[1])
if not m then return {'NOTFOUND'} end
local side, del = meta(m)
if del == '1' then return {'DELETED'} end
if side ~= ARGV[2] then return {'FORBIDDEN', side} end
local pos = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], pos .. '-0', 'f', subst(ARGV[5], 'pos', pos))
redis.call('HSET', KEYS[3], ARGV[1], meta_value(side, ARGV[3] == 'delete', ARGV[4]))
hot(ARGV[7], KEYS[2], KEYS[3])
return {'OK', pos, redis.call('SMEMBERS', KEYS[4]), redis.call('HKEYS', KEYS[5])}

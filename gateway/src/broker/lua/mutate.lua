-- Edit or delete. Preludes: hot, meta.
-- KEYS: state, replay, meta
-- ARGV: target seq, side, mode (edit|delete), excerpt, frame template,
--   replay_len, replay_ttl, channel
-- Reply (MutateReply): {'OK', pos}
--   | {'NOTFOUND'} | {'DELETED'} | {'FORBIDDEN', side} | {'NOSTATE'}
local m = meta_of(KEYS[3], KEYS[2], ARGV[1])
if not m then return {'NOTFOUND'} end
local side, del = meta(m)
if del == '1' then return {'DELETED'} end
if side ~= ARGV[2] then return {'FORBIDDEN', side} end
if redis.call('HEXISTS', KEYS[1], 'n') == 0 then return {'NOSTATE'} end
local pos = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], pos .. '-0', 'f', ARGV[5])
redis.call('HSET', KEYS[3], ARGV[1], meta_value(side, ARGV[3] == 'delete', ARGV[4]))
hot(ARGV[7], KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[8], 'B' .. pos .. ' ' .. ARGV[5])
return {'OK', pos}

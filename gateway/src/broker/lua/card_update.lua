-- An order card update takes a position like an edit. Prelude: hot.
-- KEYS: state, replay. ARGV: frame template, replay_len, replay_ttl, channel.
-- Reply (CardReply): {'OK', pos} | {'NOSTATE'}
if redis.call('HEXISTS', KEYS[1], 'n') == 0 then return {'NOSTATE'} end
local pos = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], pos .. '-0', 'f', ARGV[1])
hot(ARGV[3], KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[4], 'B' .. pos .. ' ' .. ARGV[1])
return {'OK', pos}

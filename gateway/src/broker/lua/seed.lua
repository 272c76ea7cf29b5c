-- Seeds a conversation's state: raises its counter to ARGV[1] (never lowers
-- it), sets the profile copy and the TTL.
-- KEYS: state. ARGV: n, username, avatar, ttl_ms, now ms. Reply: the counter before (-1: none).
local cur = tonumber(redis.call('HGET', KEYS[1], 'n') or '-1')
if cur < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'n', ARGV[1]) end
redis.call('HSET', KEYS[1], 'u', ARGV[2], 'a', ARGV[3], 't', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return cur

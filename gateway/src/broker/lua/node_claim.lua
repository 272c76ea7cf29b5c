-- Claims a node whose beat is older than the TTL.
-- KEYS: nodes, lock, reaped marker. ARGV: node, ttl ms, owner, lock ms, marker secs.
-- Reply: {1, last beat ms} claimed, or {0}.
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s then return {0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(s) >= now - tonumber(ARGV[2]) then return {0} end
if not redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4]) then return {0} end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[5])
return {1, s}

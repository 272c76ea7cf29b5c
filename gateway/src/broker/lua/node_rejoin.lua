-- Ends a node's own clean-up: it rejoins, the marker and the lock go.
-- KEYS: nodes, lock, reaped marker. ARGV: node, owner.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('DEL', KEYS[3])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return {1}

-- A node's heartbeat. KEYS: nodes, reaped marker. ARGV: node.
-- Reply: {1} beat recorded; {0} this node was declared dead (fence);
-- {2} the node was missing without a marker (Redis lost its state, or first beat): added.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  return {1}
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {0} end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return {2}

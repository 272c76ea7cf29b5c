-- An agent socket on node ARGV[1] stops watching: one fewer watcher there,
-- and the node leaves the hash at zero (atomic, so a concurrent watch on the
-- same node is never erased).
-- KEYS: watchers. ARGV: node. Reply: {watchers left on the node}
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return {n}

-- An order card update takes a position like an edit. Preludes: subst, hot.
-- KEYS: seq, replay, customer_nodes, watchers. ARGV: frame, replay_len, replay_ttl.
-- Reply (CardReply): {'OK', pos, customer nodes, watcher nodes} | {'NOSEQ'}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'NOSEQ'} end
local pos = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], pos .. '-0', 'f', subst(ARGV[1], 'pos', pos))
hot(ARGV[3], KEYS[2])
return {'OK', pos, redis.call('SMEMBERS', KEYS[3]), redis.call('HKEYS', KEYS[4])}

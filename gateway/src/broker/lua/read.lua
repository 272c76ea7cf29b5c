-- Monotonic read state (delivered/seen per side).
-- KEYS: read_state, seq, customer_nodes, watchers
-- ARGV: side, delivered, seen
-- Reply (ReadReply): {'OK', delivered, seen, changed (0|1), customer nodes, watcher nodes}
--   | {'AHEAD', current position}
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local d = tonumber(ARGV[2])
local s = tonumber(ARGV[3])
if d > cur or s > cur then return {'AHEAD', cur} end
local fd = ARGV[1] .. '_delivered'
local fs = ARGV[1] .. '_seen'
local od = tonumber(redis.call('HGET', KEYS[1], fd) or '0')
local os = tonumber(redis.call('HGET', KEYS[1], fs) or '0')
local changed = 0
if s > os then os = s; changed = 1; redis.call('HSET', KEYS[1], fs, os) end
local nd = math.max(od, d, os)
if nd > od then changed = 1; redis.call('HSET', KEYS[1], fd, nd) end
return {'OK', nd, os, changed, redis.call('SMEMBERS', KEYS[3]), redis.call('HKEYS', KEYS[4])}

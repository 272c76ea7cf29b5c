-- Monotonic read state (delivered/seen per side).
-- KEYS: read_state, state
-- ARGV: side, delivered, seen
-- Reply (ReadReply): {'OK', delivered, seen, changed (0|1)} | {'AHEAD', current position}
local cur = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
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
return {'OK', nd, os, changed}

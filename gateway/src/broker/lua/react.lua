-- A reaction on or off. Preludes: subst, hot, meta.
-- KEYS: seq, replay, meta, customer_nodes, reactions, reactors, watchers
-- ARGV: target seq, reactor member, emoji, on (1|0), frame, replay_len, replay_ttl
-- Reply (ReactReply): {'OK', pos, reactions json, customer nodes, watcher nodes}
--   | {'NOOP', 0, reactions json} | {'NOTFOUND'} | {'DELETED'}
local m = redis.call('HGET', KEYS[3], ARGV[1])
if not m then return {'NOTFOUND'} end
local side, del = meta(m)
if del == '1' then return {'DELETED'} end
local changed
if ARGV[4] == '1' then changed = redis.call('SADD', KEYS[6], ARGV[2]) else changed = redis.call('SREM', KEYS[6], ARGV[2]) end
if changed == 1 then
  local n = redis.call('HINCRBY', KEYS[5], ARGV[3], ARGV[4] == '1' and 1 or -1)
  if n <= 0 then redis.call('HDEL', KEYS[5], ARGV[3]) end
end
local flat = redis.call('HGETALL', KEYS[5])
local parts = {}
for i = 1, #flat, 2 do table.insert(parts, '"' .. flat[i] .. '":' .. flat[i + 1]) end
table.sort(parts)
local rx = '{' .. table.concat(parts, ',') .. '}'
if changed == 0 then return {'NOOP', 0, rx} end
local pos = redis.call('INCR', KEYS[1])
local f = subst(ARGV[5], 'pos', pos)
local a, b = string.find(f, '"reactions":{},', 1, true)
if a then f = string.sub(f, 1, a - 1) .. '"reactions":' .. rx .. ',' .. string.sub(f, b + 1) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], pos .. '-0', 'f', f)
hot(ARGV[7], KEYS[2], KEYS[3])
return {'OK', pos, rx, redis.call('SMEMBERS', KEYS[4]), redis.call('HKEYS', KEYS[7])}

-- A reaction on or off. Preludes: hot, meta.
-- KEYS: state, replay, meta, reactions, reactors
-- ARGV: target seq, reactor member, emoji, on (1|0), frame template,
--   replay_len, replay_ttl, channel
-- Reply (ReactReply): {'OK', pos, reactions json}
--   | {'NOOP', 0, reactions json} | {'NOTFOUND'} | {'DELETED'} | {'NOSTATE'}
local m = meta_of(KEYS[3], KEYS[2], ARGV[1])
if not m then return {'NOTFOUND'} end
local side, del = meta(m)
if del == '1' then return {'DELETED'} end
if redis.call('HEXISTS', KEYS[1], 'n') == 0 then return {'NOSTATE'} end
local changed
if ARGV[4] == '1' then changed = redis.call('SADD', KEYS[5], ARGV[2]) else changed = redis.call('SREM', KEYS[5], ARGV[2]) end
if changed == 1 then
  local n = redis.call('HINCRBY', KEYS[4], ARGV[3], ARGV[4] == '1' and 1 or -1)
  if n <= 0 then redis.call('HDEL', KEYS[4], ARGV[3]) end
end
local flat = redis.call('HGETALL', KEYS[4])
local parts = {}
for i = 1, #flat, 2 do table.insert(parts, '"' .. flat[i] .. '":' .. flat[i + 1]) end
table.sort(parts)
local rx = '{' .. table.concat(parts, ',') .. '}'
if changed == 0 then return {'NOOP', 0, rx} end
local pos = redis.call('HINCRBY', KEYS[1], 'n', 1)
local f = ARGV[5]
local a, b = string.find(f, '"reactions":{},', 1, true)
if a then f = string.sub(f, 1, a - 1) .. '"reactions":' .. rx .. ',' .. string.sub(f, b + 1) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], pos .. '-0', 'f', f)
hot(ARGV[7], KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('PUBLISH', ARGV[8], 'B' .. pos .. ' ' .. f)
return {'OK', pos, rx}

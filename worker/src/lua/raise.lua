-- Raises a conversation's counter to at least ARGV[1] (the record's last
-- position), never lowers it; leaves a missing state alone (the gateway
-- seeds it from the record). KEYS[1] = the conversation's state hash.
-- Returns 1 when it raised the counter.
local n = redis.call('HGET', KEYS[1], 'n')
if n and tonumber(n) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'n', ARGV[1])
  return 1
end
return 0

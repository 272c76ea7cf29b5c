-- The chat-list row of one conversation: keeps the newest state.
-- KEYS[1] = row hash. ARGV = the fields of schema::chatlist::FIELDS, in
-- order: customer_id, username, avatar_url, preview, last_ts, last_seq,
-- unread, staff_seen.
-- Returns {applied (0/1), previous username, previous last_ts (0 when none),
-- shown (1 when anything an agent sees changed: not so for a customer's receipt)}.
local cur = redis.call('HMGET', KEYS[1], 'last_seq', 'staff_seen', 'username', 'last_ts', 'avatar_url', 'preview', 'unread')
local old_seq = tonumber(cur[1])
local old_name = cur[3] or ''
local old_ts = tonumber(cur[4]) or 0
if old_seq then
  local new_seq = tonumber(ARGV[6])
  if new_seq < old_seq then return {0, old_name, old_ts, 0} end
  if new_seq == old_seq and tonumber(ARGV[8]) < (tonumber(cur[2]) or 0) then return {0, old_name, old_ts, 0} end
  if cur[3] == ARGV[2] and cur[5] == ARGV[3] and cur[6] == ARGV[4] and cur[4] == ARGV[5]
    and cur[1] == ARGV[6] and cur[7] == ARGV[7] then
    if cur[2] ~= ARGV[8] then redis.call('HSET', KEYS[1], 'staff_seen', ARGV[8]) end
    return {1, old_name, old_ts, 0}
  end
end
redis.call('HSET', KEYS[1], 'customer_id', ARGV[1], 'username', ARGV[2], 'avatar_url', ARGV[3],
  'preview', ARGV[4], 'last_ts', ARGV[5], 'last_seq', ARGV[6], 'unread', ARGV[7], 'staff_seen', ARGV[8])
return {1, old_name, old_ts, 1}

-- A message's meta value "side|deleted|excerpt" (Rust twin: broker::meta::Meta).
-- Sends keep it in the message's replay entry (field `m`); edits, deletes
-- and values restored from the SQL record go to the override hash.
local function meta(m)
  local p1 = string.find(m, '|', 1, true)
  local p2 = string.find(m, '|', p1 + 1, true)
  return string.sub(m, 1, p1 - 1), string.sub(m, p1 + 1, p2 - 1), string.sub(m, p2 + 1)
end
local function meta_value(side, deleted, excerpt)
  if deleted then return side .. '|1|' end
  return side .. '|0|' .. excerpt
end
-- The meta value of message `seq`: the override hash first, then the
-- message's replay entry. Nil when neither has it (the gateway restores it
-- from the record and runs the script again).
local function meta_of(meta_key, replay_key, seq)
  local m = redis.call('HGET', meta_key, seq)
  if m then return m end
  local e = redis.call('XRANGE', replay_key, seq .. '-0', seq .. '-0')
  if #e == 0 then return nil end
  local f = e[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'm' then return f[i + 1] end
  end
  return nil
end

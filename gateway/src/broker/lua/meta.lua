-- A message's meta value "side|deleted|excerpt" (Rust twin: broker::meta::Meta).
local function meta(m)
  local p1 = string.find(m, '|', 1, true)
  local p2 = string.find(m, '|', p1 + 1, true)
  return string.sub(m, 1, p1 - 1), string.sub(m, p1 + 1, p2 - 1), string.sub(m, p2 + 1)
end
local function meta_value(side, deleted, excerpt)
  if deleted then return side .. '|1|' end
  return side .. '|0|' .. excerpt
end

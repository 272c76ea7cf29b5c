-- Replaces the first `"<field>":0,` placeholder of a rendered frame with the
-- value. Fields are rendered before any user text, so the first match is the
-- field. (Rust twin: broker::template::subst.)
local function subst(f, field, v)
  local pat = '"' .. field .. '":0,'
  local a, b = string.find(f, pat, 1, true)
  if not a then return f end
  return string.sub(f, 1, a - 1) .. '"' .. field .. '":' .. v .. ',' .. string.sub(f, b + 1)
end

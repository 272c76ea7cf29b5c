-- Keeps a conversation's hot state bounded: its state hash, replay stream and message
-- metadata expire `ttl` seconds after its last positioned event (an idle
-- conversation then costs Redis nothing but its sequence and chat-list row).
-- A client resuming later gets `complete: false` and reloads history; the
-- metadata of an older message is restored from the SQL record on demand.
local function hot(ttl, ...)
  for _, k in ipairs({...}) do redis.call('EXPIRE', k, ttl) end
end

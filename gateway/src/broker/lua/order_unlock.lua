-- Deletes an order's lock only if it still holds our token.
-- KEYS: lock. ARGV: token. Reply: keys deleted (0|1).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0

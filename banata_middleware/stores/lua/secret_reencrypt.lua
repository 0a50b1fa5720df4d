-- Key rotation: swap one encrypted field for its re-encryption only if it still holds what was
-- read, so a concurrent enable/disable is never overwritten with a stale secret.
-- KEYS: user. ARGV: now, field, old ciphertext, new ciphertext. Returns 1 when swapped.
if redis.call('HGET', KEYS[1], ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[4])
return 1

-- Key rotation of a pending setup's secret (confirmed ones live in the record store:
-- RewrapTotpSecret): swap it for its re-encryption only if it still holds what was read, so a
-- concurrent enable/disable is never overwritten with a stale secret.
-- KEYS: user. ARGV: now, old ciphertext, new ciphertext. Returns 1 when swapped.
if redis.call('HGET', KEYS[1], 'pending_secret') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'pending_secret', ARGV[3])
return 1

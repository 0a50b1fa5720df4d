-- Key rotation of a pending setup's secret (confirmed ones live in the record store:
-- RewrapTotpSecret): swap it for its re-encryption only if it still holds what was read, so a
-- concurrent enable/disable is never overwritten with a stale secret.
-- Fields: hot_ops.SecretReencrypt (ciphertexts). Returns 1 when swapped.
if redis.call('HGET', user_key, 'pending_secret') ~= old_secret then return 0 end
redis.call('HSET', user_key, 'pending_secret', new_secret)
return 1

-- A user's passkeys: credential id -> JSON record. KEYS: passkeys hash. ARGV: now.
return redis.call('HGETALL', KEYS[1])

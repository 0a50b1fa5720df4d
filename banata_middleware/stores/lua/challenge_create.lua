-- A pending sign-in challenge: the password passed, the second factor is still due.
-- KEYS: user, audit, challenge. ARGV[6..8]: ttl ms, attempts, remember me.
local ttl = tonumber(ARGV[6])
redis.call('HSET', KEYS[3], 'exp', NOW + ttl, 'attempts', ARGV[7], 'remember', ARGV[8], 'created', NOW)
redis.call('PEXPIRE', KEYS[3], ttl)
return {'OK', EVENTS}

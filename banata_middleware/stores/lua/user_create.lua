-- A built-in user's record. KEYS: user, audit. ARGV[6..8]: email, name, password hash.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'EXISTS', EVENTS} end
-- 'pwnf': the hash is of the NFKC-normalized password (no raw-form retry at sign-in).
redis.call('HSET', KEYS[1], 'email', ARGV[6], 'name', ARGV[7], 'pw', ARGV[8], 'pwnf', '1', 'created', NOW)
return {'OK', EVENTS}

-- Replaces a password hash made before passwords were NFKC-normalized by the hash of the normalized
-- form, only if the stored hash is still the one just checked (compare-and-set): a concurrent
-- change of the password is never undone. KEYS: user, audit. ARGV[6..7]: old hash, new hash.
if redis.call('HGET', KEYS[1], 'pw') ~= ARGV[6] then return {'CHANGED', EVENTS} end
redis.call('HSET', KEYS[1], 'pw', ARGV[7], 'pwnf', '1')
audit('password.rehashed')
return {'OK', EVENTS}

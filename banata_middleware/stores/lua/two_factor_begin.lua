-- 'enable': stores the new secret and backup codes as pending (short-lived hot state: they reach
-- the record store only when a first code confirms them), refused once 2FA is on. One step, so
-- two concurrent enables leave one consistent secret + code set, never a mix.
-- The setup belongs to the session that started it ('pending_sid'): another session of the user
-- (a browser that only knew the password) can neither read its secret, replace its codes nor confirm it.
-- KEYS: user, audit, pending backup codes. ARGV[6]: secret ciphertext; ARGV[7]: session id hash;
-- ARGV[8]: id of the key the codes are hashed under; ARGV[9..]: code hashes.
local u = hash(KEYS[1])
if u.tfa == '1' then return {'ALREADY', EVENTS} end
redis.call('HSET', KEYS[1], 'pending_secret', ARGV[6], 'pending_sid', ARGV[7], 'pending_kid', ARGV[8])
redis.call('DEL', KEYS[3])
for i = 9, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
return {'OK', EVENTS}

-- 'enable': stores the new secret and backup codes as pending, refused once 2FA is confirmed.
-- One step, so two concurrent enables leave one consistent secret + code set, never a mix.
-- KEYS: user, audit, pending backup codes. ARGV[6]: secret ciphertext; ARGV[7]: id of the key the
-- codes are hashed under; ARGV[8..]: code hashes.
local u = hash(KEYS[1])
if u.tfa == '1' then return {'ALREADY', EVENTS} end
redis.call('HSET', KEYS[1], 'pending_secret', ARGV[6], 'codes_kid', ARGV[7])
redis.call('DEL', KEYS[3])
for i = 8, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
return {'OK', EVENTS}

-- Turns 2FA on with a secret the host already has (migration from another system, load-test
-- seeding), replacing any earlier secret, pending setup and backup codes in one step.
-- KEYS: user, audit, backup codes, pending backup codes. ARGV[6]: secret ciphertext; ARGV[7]: id of
-- the key the codes are hashed under; ARGV[8..]: hashes.
local u = hash(KEYS[1])
redis.call('HSET', KEYS[1], 'tfa', '1', 'secret', ARGV[6], 'gen', tonumber(u.gen or '0') + 1, 'codes_kid', ARGV[7])
redis.call('HDEL', KEYS[1], 'pending_secret', 'last_step')
redis.call('DEL', KEYS[3], KEYS[4])
for i = 8, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
audit('two_factor.enabled', '', 'import')
return {'OK', EVENTS}

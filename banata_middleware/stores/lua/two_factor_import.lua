-- After an import wrote the factor and codes to the record store (Flows.import_totp): the copy
-- says 2FA is on, any pending setup ends, and bumping 'gen' voids trusted devices.
-- KEYS: user, audit, pending backup codes. ARGV[6]: id of the key the codes are hashed under.
local u = hash(KEYS[1])
redis.call('HSET', KEYS[1], 'tfa', '1', 'gen', tonumber(u.gen or '0') + 1, 'codes_kid', ARGV[6])
redis.call('HDEL', KEYS[1], 'pending_secret', 'pending_sid', 'pending_kid')
redis.call('DEL', KEYS[3])
return {'OK', EVENTS}

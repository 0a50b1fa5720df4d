-- After an import wrote the factor and codes to the record store (Flows.import_totp): the copy
-- says 2FA is on, any pending setup ends, and bumping 'gen' voids trusted devices.
-- Fields: hot_ops.TwoFactorImport (codes_kid: the key id the codes are hashed under).
local u = hash(user_key)
redis.call('HSET', user_key, 'tfa', '1', 'gen', tonumber(u.gen or '0') + 1, 'codes_kid', codes_kid)
redis.call('HDEL', user_key, 'pending_secret', 'pending_sid', 'pending_kid', 'pending_name')
redis.call('DEL', pending_codes_key)
return {'OK', EVENTS}

-- 'enable': stores the new secret and backup codes as pending (short-lived hot state: they reach
-- the record store only when a first code confirms them), refused once 2FA is on. One step, so
-- two concurrent enables leave one consistent secret + code set, never a mix.
-- The setup belongs to the session that started it ('pending_sid'): another session of the user
-- (a browser that only knew the password) can neither read its secret, replace its codes nor confirm it.
-- Fields: hot_ops.TwoFactorBegin (secret: its ciphertext).
local u = hash(user_key)
if u.tfa == '1' then return {'ALREADY', EVENTS} end
redis.call('HSET', user_key, 'pending_secret', secret, 'pending_sid', sid, 'pending_kid', codes_kid,
           'pending_name', name)
redis.call('DEL', pending_codes_key)
for _, code_hash in ipairs(hashes) do redis.call('SADD', pending_codes_key, code_hash) end
return {'OK', EVENTS}

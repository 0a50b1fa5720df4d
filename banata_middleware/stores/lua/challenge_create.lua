-- A pending sign-in challenge: the password passed, the second factor is still due. It records
-- what opened it ('opened_by', see challenge_refusal): only a password opens one (a passkey
-- without user verification never does: passkey_sign_in.lua).
-- KEYS: user, audit, challenge. ARGV[6..8]: ttl ms, attempts, remember me.
local ttl = tonumber(ARGV[6])
redis.call('HSET', KEYS[3], 'exp', NOW + ttl, 'attempts', ARGV[7], 'remember', ARGV[8], 'created', NOW,
  'opened_by', 'pwd')
redis.call('PEXPIRE', KEYS[3], ttl)
return {'OK', EVENTS}

-- A pending sign-in challenge: the password passed, the second factor is still due. It records
-- what opened it ('opened_by', see challenge_refusal): only a password opens one (a passkey
-- without user verification never does: passkey_sign_in.lua).
-- Fields: hot_ops.ChallengeCreate.
local ttl = tonumber(ttl_ms)
redis.call('HSET', challenge_key, 'exp', NOW + ttl, 'attempts', attempts, 'remember', remember, 'created', NOW,
  'opened_by', 'pwd')
redis.call('PEXPIRE', challenge_key, ttl)
return {'OK', EVENTS}

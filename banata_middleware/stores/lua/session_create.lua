-- A session for a user who passed every factor due. KEYS: user, audit, session, session index.
-- ARGV[6..11]: session id hash, session spec (see new_session), aal, mfa verified at, remember me,
-- password checked now (1|0).
-- 'pwd' is when the password was last checked: a user without 2FA needs it recent to add a passkey.
-- An aal 1 session is refused (TWO_FACTOR_ON) when 2FA is on by now: a password sign-in loaded
-- before the owner confirmed enrolment (which ends every other session) must not slip past it.
if tonumber(ARGV[8]) < 2 and redis.call('HGET', KEYS[1], 'tfa') == '1' then return {'TWO_FACTOR_ON', EVENTS} end
new_session(KEYS[3], KEYS[4], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10])
if ARGV[11] == '1' then redis.call('HSET', KEYS[3], 'pwd', NOW) end
return {'OK', EVENTS}

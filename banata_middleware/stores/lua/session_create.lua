-- A session for a user who passed every factor due. Fields: hot_ops.SessionCreate (the session
-- spec and amr: see new_session).
-- 'pwd' is when the password was last checked: a user without 2FA needs it recent to add a passkey.
-- An aal 1 session is refused (TWO_FACTOR_ON) when 2FA is on by now: a password sign-in loaded
-- before the owner confirmed enrolment (which ends every other session) must not slip past it.
if tonumber(aal) < 2 and redis.call('HGET', user_key, 'tfa') == '1' then return {'TWO_FACTOR_ON', EVENTS} end
new_session(session_key, sessions_key, sid, session_spec, aal, mfa_ms, remember, amr)
if password_checked == '1' then redis.call('HSET', session_key, 'pwd', NOW) end
return {'OK', EVENTS}

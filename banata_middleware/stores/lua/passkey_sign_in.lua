-- A verified passkey assertion becomes a session, after the record store (SQL) accepted its sign
-- count (AdvanceSignCount: the clone check, and the passkey's own rules, which the flow applies:
-- passwordless only with user verification now and at registration). Passwordless, or as the
-- second factor of a pending sign-in that a password opened.
-- Closes the races "the pending challenge is answered twice" and "revoke-sessions between the
-- check and the answer" (challenge_refusal, shared with challenge_answer.lua), and "a lock set
-- between the load and the answer".
-- A passwordless sign-in in a browser signed in as the same user is a step-up: the session it
-- replaces ends here (rotation, as in session_answer.lua).
-- Fields: hot_ops.PasskeySignIn (the new session's spec and amr: see new_session).
-- Reply: status (SESSION | GONE | LOCKED | SAME_FACTOR), events, and with SESSION the remember-me
-- flag the session was made with (with LOCKED, the lock's end).
local u = hash(user_key)
if mode == 'second_factor' then
  local ch = hash(challenge_key)
  local refusal = challenge_refusal(ch, u, 'passkey')
  if refusal then return refusal end
  redis.call('DEL', challenge_key)
  redis.call('HSET', user_key, 'fails', 0, 'streak', 0)
  new_session(new_session_key, sessions_key, new_sid, session_spec, 2, NOW, ch.remember, amr)
  return {'SESSION', EVENTS, ch.remember or '0'}
end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
if replaced_sid ~= '' then
  if redis.call('DEL', replaced_key) == 1 then audit('session.revoked', replaced_sid, 'rotated') end
  redis.call('SREM', sessions_key, replaced_sid)
end
new_session(new_session_key, sessions_key, new_sid, session_spec, 2, NOW, remember, amr)
return {'SESSION', EVENTS, remember}

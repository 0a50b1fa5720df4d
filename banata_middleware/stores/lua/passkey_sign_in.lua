-- A verified passkey assertion becomes a session, after the record store (SQL) accepted its sign
-- count (AdvanceSignCount: the clone check, and the passkey's own rules, which the flow applies:
-- passwordless only with user verification now and at registration). Passwordless, or as the
-- second factor of a pending sign-in that a password opened.
-- Closes the races "the pending challenge is answered twice" and "revoke-sessions between the
-- check and the answer" (challenge_refusal, shared with challenge_answer.lua), and "a lock set
-- between the load and the answer".
-- A passwordless sign-in in a browser signed in as the same user is a step-up: the session it
-- replaces ends here (rotation, as in session_answer.lua).
-- KEYS: user, audit, pending challenge, new session, session index, replaced session.
-- ARGV[6..11]: mode (second_factor|passwordless), new session id hash, session spec (see
-- new_session), remember me, replaced session id hash ('' if none), amr (see new_session).
-- Reply: status (SESSION | GONE | LOCKED | SAME_FACTOR), events, and with SESSION the remember-me
-- flag the session was made with (with LOCKED, the lock's end).
local u = hash(KEYS[1])
if ARGV[6] == 'second_factor' then
  local ch = hash(KEYS[3])
  local refusal = challenge_refusal(ch, u, 'passkey')
  if refusal then return refusal end
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'fails', 0, 'streak', 0)
  new_session(KEYS[4], KEYS[5], ARGV[7], ARGV[8], 2, NOW, ch.remember, ARGV[11])
  return {'SESSION', EVENTS, ch.remember or '0'}
end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
if ARGV[10] ~= '' then
  if redis.call('DEL', KEYS[6]) == 1 then audit('session.revoked', ARGV[10], 'rotated') end
  redis.call('SREM', KEYS[5], ARGV[10])
end
new_session(KEYS[4], KEYS[5], ARGV[7], ARGV[8], 2, NOW, ARGV[9], ARGV[11])
return {'SESSION', EVENTS, ARGV[9]}

-- A verified passkey assertion becomes a session: passwordless, only with user verification
-- (a PIN or biometric makes the passkey two factors in one: AAL2), or as the second factor of a
-- pending sign-in that a password opened. A passkey without user verification is one factor,
-- something you have (NIST SP 800-63B-4): it never opens a sign-in by itself (UV_REQUIRED). Nor does
-- one registered without user verification ('uv' false in its record), whatever a later assertion
-- reports: a thief may set a PIN on a stolen key that had none. Records from before 'uv' was
-- stored have none and are judged by the assertion alone.
-- Closes the races "two assertions with the same sign count both pass" (the count is compared
-- and raised here), "the pending challenge is answered twice" and "revoke-sessions between the
-- check and the answer" (challenge_refusal, shared with challenge_answer.lua).
-- A count that does not grow, when either side is non-zero, is a suspected clone: refused.
-- A passwordless sign-in in a browser signed in as the same user is a step-up: the session it
-- replaces ends here (rotation, as in session_answer.lua).
-- KEYS: user, audit, passkeys, pending challenge, new session, session index, replaced session.
-- ARGV[6..13]: credential id, new sign count, mode (second_factor|passwordless), user verified,
-- new session id hash, session spec (see new_session), remember me, replaced session id hash ('' if none).
-- Reply: status, events, and with SESSION the remember-me flag the session was made with.
local second_factor = ARGV[8] == 'second_factor'
if not second_factor and ARGV[9] ~= '1' then return {'UV_REQUIRED', EVENTS} end
local raw = redis.call('HGET', KEYS[3], ARGV[6])
if not raw then return {'NOT_FOUND', EVENTS} end
local u = hash(KEYS[1])
local ch = {}
if second_factor then
  ch = hash(KEYS[4])
  local refusal = challenge_refusal(ch, u, 'passkey')
  if refusal then return refusal end
else
  local lock = locked_until(u)
  if lock > 0 then return {'LOCKED', EVENTS, lock} end
end
local p = cjson.decode(raw)
if not second_factor and p.uv == false then return {'UV_REQUIRED', EVENTS} end
local stored, new = tonumber(p.signCount or 0), tonumber(ARGV[7])
if (stored > 0 or new > 0) and new <= stored then
  audit('passkey.clone_suspected', '', ARGV[6])
  return {'CLONE', EVENTS}
end
p.signCount = new
redis.call('HSET', KEYS[3], ARGV[6], cjson.encode(p))
audit('passkey.authenticated', ARGV[10], ARGV[6])
if second_factor then
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[1], 'fails', 0, 'streak', 0)
  new_session(KEYS[5], KEYS[6], ARGV[10], ARGV[11], 2, NOW, ch.remember)
  return {'SESSION', EVENTS, ch.remember or '0'}
end
if ARGV[13] ~= '' then
  if redis.call('DEL', KEYS[7]) == 1 then audit('session.revoked', ARGV[13], 'rotated') end
  redis.call('SREM', KEYS[6], ARGV[13])
end
new_session(KEYS[5], KEYS[6], ARGV[10], ARGV[11], 2, NOW, ARGV[12])
return {'SESSION', EVENTS, ARGV[12]}

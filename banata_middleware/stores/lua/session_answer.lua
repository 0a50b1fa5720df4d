-- A second factor given by a signed-in user, told the record store's verdict (Flows.verify:
-- the step or code was consumed there, or the enrolment's factor and codes written there, first):
-- enrolment (the copy now says 2FA is on, the pending setup ends) or step-up (refreshes the
-- session's mfa time). On success the session is rotated (a new id; the old one, which a thief
-- may hold, ends here) and enrolment ends every other session of the user: none of them passed
-- the new factor. An enrolment's copy is written, and the other sessions end, even when the
-- caller's session ended meanwhile: the record store has the factor, and the copy must say so.
-- (When this script never runs, the repair of the copy does the same: user_fill.lua, R4-2.)
-- A code sent by message (outcome 'otp', step-up only) is decided here, after the session and the
-- lock are checked, by its keyed hash against the user's one live code (otp_take).
-- Fields: hot_ops.SessionAnswer. The session spec (see new_session): the rotated session keeps
-- rememberMe's lifetime and counts toward the cap of sessions per user; amr: the factor given,
-- added to the session's. Enrolment: codes_kid, the id of the key the codes are hashed under (the
-- copy's codes_kid). Outcome 'otp': binding and code_hash, against otp_key (the user's code).
-- lock_audited: see second_factor_failed.
-- The new session keeps 'auth', when the old one's sign-in happened (its 'created' if it has no
-- 'auth'): a step-up does not restart the aal 2 absolute lifetime (Policies.aal2_max_lifetime).
local s = hash(session_key)
local u = hash(user_key)
local ok = outcome == 'ok'
-- The other sessions' keys are built here from the caller's: same user, same hash tag, same slot.
local base = string.sub(session_key, 1, #session_key - #sid)
if ok and mode == 'enrol' then
  redis.call('HSET', user_key, 'tfa', '1', 'codes_kid', codes_kid, 'gen', tonumber(u.gen or '0') + 1)
  redis.call('HDEL', user_key, 'pending_secret', 'pending_sid', 'pending_kid', 'pending_name')
  redis.call('DEL', pending_codes_key)
  for _, other in ipairs(redis.call('SMEMBERS', sessions_key)) do
    if other ~= sid then
      if redis.call('DEL', base .. other) == 1 then audit('session.revoked', other, 'enrolment') end
      redis.call('SREM', sessions_key, other)
    end
  end
end
-- revoked_at: an administrator's "end every session" that ran after the caller was loaded.
if not live(s) or tonumber(s.created or '0') <= tonumber(u.revoked_at or '0') then return {'GONE', EVENTS} end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
if outcome == 'otp' then ok = otp_take(otp_key, binding, 'step_up', code_hash) ~= nil end
if ok then
  redis.call('HSET', user_key, 'fails', 0)
  if redis.call('DEL', session_key) == 1 then audit('session.revoked', sid, 'rotated') end
  redis.call('SREM', sessions_key, sid)
  new_session(new_session_key, sessions_key, new_sid, session_spec, 2, NOW, s.remember or '0', merge_amr(s.amr, amr))
  redis.call('HSET', new_session_key, 'auth', s.auth or s.created)
  if s.pwd then redis.call('HSET', new_session_key, 'pwd', s.pwd) end
  return {'OK', EVENTS}
end
lock = second_factor_failed(tonumber(lock_failures), tonumber(lock_ms), method, lock_audited)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
return {'WRONG', EVENTS}

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
-- KEYS: user, audit, session, pending backup codes, new session, session index, and for 'otp' the
-- user's code (Keys.otp).
-- ARGV[6..14]: mode (enrol|stepup), method, outcome (ok|wrong), session id hash, failures before
-- lock, lock ms, new session id hash, session spec (see new_session: the rotated session keeps
-- rememberMe's lifetime and counts toward the cap of sessions per user), amr of the factor given
-- (added to the session's: see new_session). Enrolment: ARGV[15], the id of the key the codes are
-- hashed under (the copy's codes_kid). For 'otp', ARGV[16..17]: binding, code hash. ARGV[18]: '1'
-- when the lock was audited already (see second_factor_failed).
-- The new session keeps 'auth', when the old one's sign-in happened (its 'created' if it has no
-- 'auth'): a step-up does not restart the aal 2 absolute lifetime (Policies.aal2_max_lifetime).
local s = hash(KEYS[3])
local u = hash(KEYS[1])
local ok = ARGV[8] == 'ok'
-- The other sessions' keys are built here from the caller's: same user, same hash tag, same slot.
local base = string.sub(KEYS[3], 1, #KEYS[3] - #ARGV[9])
if ok and ARGV[6] == 'enrol' then
  redis.call('HSET', KEYS[1], 'tfa', '1', 'codes_kid', ARGV[15], 'gen', tonumber(u.gen or '0') + 1)
  redis.call('HDEL', KEYS[1], 'pending_secret', 'pending_sid', 'pending_kid')
  redis.call('DEL', KEYS[4])
  for _, sid in ipairs(redis.call('SMEMBERS', KEYS[6])) do
    if sid ~= ARGV[9] then
      if redis.call('DEL', base .. sid) == 1 then audit('session.revoked', sid, 'enrolment') end
      redis.call('SREM', KEYS[6], sid)
    end
  end
end
-- revoked_at: an administrator's "end every session" that ran after the caller was loaded.
if not live(s) or tonumber(s.created or '0') <= tonumber(u.revoked_at or '0') then return {'GONE', EVENTS} end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
if ARGV[8] == 'otp' then ok = otp_take(KEYS[7], ARGV[16], 'step_up', ARGV[17]) ~= nil end
if ok then
  redis.call('HSET', KEYS[1], 'fails', 0)
  if redis.call('DEL', KEYS[3]) == 1 then audit('session.revoked', ARGV[9], 'rotated') end
  redis.call('SREM', KEYS[6], ARGV[9])
  new_session(KEYS[5], KEYS[6], ARGV[12], ARGV[13], 2, NOW, s.remember or '0', merge_amr(s.amr, ARGV[14]))
  redis.call('HSET', KEYS[5], 'auth', s.auth or s.created)
  if s.pwd then redis.call('HSET', KEYS[5], 'pwd', s.pwd) end
  return {'OK', EVENTS}
end
lock = second_factor_failed(tonumber(ARGV[10]), tonumber(ARGV[11]), ARGV[7], ARGV[18])
if lock > 0 then return {'LOCKED', EVENTS, lock} end
return {'WRONG', EVENTS}

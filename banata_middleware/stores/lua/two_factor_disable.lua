-- 'disable'. Mode 'confirmed': after the record store removed the factor and codes (Flows.disable:
-- removal is written there first, so a crash between leaves no factor behind a copy that says 2FA
-- is off), the factor-change rule is re-checked here, as with 2FA on (the record had it when the
-- request was loaded; the copy may say off already, repaired by a sign-in that read the record
-- after the removal): a session that ended, was revoked or went stale while the request was under
-- way is refused, and the flow puts the factor back (RestoreSecondFactor, then mode 'undo').
-- Closes "a stale session disables 2FA": the rule holds at the moment of the change. Mode
-- 'pending' (no factor yet: a setup is cancelled): the rule is re-checked too, since the owner may
-- have confirmed the setup (which ends every other session) after this request was loaded. Either
-- way the copy says 2FA is off, a pending setup ends, and bumping 'gen' voids trusted devices.
-- Mode 'undo' (after RestoreSecondFactor): the copy says 2FA is on again, with codes_kid, and
-- every session made since since_ms (the removal) but the caller's ends, whatever its aal: a
-- sign-in that read the record while the factor was gone must not keep what the undo takes back,
-- nor the aal 2 an enrolment in that window gave it (R7-4: the undo removed that factor too).
-- Bumping 'gen' voids the trusted devices: one trusted in that window by a factor the undo took
-- back must not skip the second factor (the owner's browsers ask once more, as after a disable).
-- Fields: hot_ops.TwoFactorDisable (session_key and sid: the caller's).
-- Mode 'sessions' (R10-5, R10-1: RestoreSecondFactor found its lease gone, CHANGED, so another
-- change of the factors came first and stands, and nothing was put back): 'undo' but the factor
-- part; the copy's 'tfa' is that change's to set. The sessions made in the window (the record said
-- off: the password alone signed in) still end and the trusted devices are still voided, so a
-- window session never outlives the 503 "nothing changed"; that puts no factor back and
-- contradicts no later change.
local u = hash(user_key)
if mode == 'undo' or mode == 'sessions' then
  if mode == 'undo' then
    redis.call('HSET', user_key, 'tfa', '1', 'codes_kid', codes_kid, 'gen', tonumber(u.gen or '0') + 1)
  else
    redis.call('HSET', user_key, 'gen', tonumber(u.gen or '0') + 1)
  end
  -- The other sessions' keys are built from the caller's: same user, same hash tag, same slot.
  local base = string.sub(session_key, 1, #session_key - #sid)
  for _, other in ipairs(redis.call('SMEMBERS', sessions_key)) do
    local s = redis.call('HMGET', base .. other, 'aal', 'created')
    if other ~= sid and s[1] and tonumber(s[2] or '0') >= tonumber(since_ms) then
      redis.call('DEL', base .. other)
      redis.call('SREM', sessions_key, other)
      audit('session.revoked', other, mode == 'undo' and 'two_factor_restored' or 'factor_change_undone')
    end
  end
  return {'OK', EVENTS}
end
if mode == 'pending' then
  local refused = factor_change_refused(u, session_key, max_age_ms, '1')
  if refused then return {refused, EVENTS} end
  if u.tfa == '1' or not u.pending_secret then return {'NOT_ENABLED', EVENTS} end
else
  local refused = factor_change_refused({tfa = '1', revoked_at = u.revoked_at}, session_key, max_age_ms, '1')
  if refused then return {refused, EVENTS} end
end
redis.call('HDEL', user_key, 'pending_secret', 'pending_sid', 'pending_kid', 'pending_name', 'enrol_sid', 'enrol_to')
redis.call('HSET', user_key, 'tfa', '0', 'codes_kid', '', 'gen', tonumber(u.gen or '0') + 1)
redis.call('DEL', pending_codes_key)
return {'OK', EVENTS}

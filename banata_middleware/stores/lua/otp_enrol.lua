-- Confirms an enrolment in codes by message (Flows.verify_otp): the code sent to the new address
-- proves it reaches the user. The code is used up here, BEFORE the record store writes the
-- factor: a crash between leaves a code used and no factor (the user asks for another), never a
-- factor that nobody confirmed. A wrong code counts toward the user's temporary lock, as any
-- wrong second factor does.
-- With 2FA on (the copy says so, or the record did when the request was loaded: on = '1'), adding
-- a factor is a factor change: the session must have passed a second factor within max_age_ms,
-- checked here with the code (R6-1: an enrolment begun with the password alone, before an import
-- or another enrolment turned 2FA on, does not finish; the flow checked it when loaded too).
-- On success (2FA off) 'enrol_sid' names the session that used the code and 'enrol_to' the address
-- (channel:address) it confirmed, until session_answer.lua finishes the enrolment: when that never
-- runs, the copy's repair keeps that session if the record has that address (user_fill.lua, R6-2).
-- Fields: hot_ops.OtpEnrol (otp_key: the user's code; session_key: the caller's).
-- Returns OK + channel + address, GONE (no live session), LOCKED + lock end, FRESH_TWO_FACTOR, or WRONG.
local u = hash(user_key)
local s = hash(session_key)
if not live(s) or tonumber(s.created or '0') <= tonumber(u.revoked_at or '0') then return {'GONE', EVENTS} end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
if u.tfa == '1' or on == '1' then
  local refused = factor_change_refused({tfa = '1', revoked_at = u.revoked_at}, session_key, max_age_ms, '1')
  if refused then return {refused, EVENTS} end
end
local c = otp_take(otp_key, binding, 'enrol', code_hash)
if c then
  redis.call('HDEL', user_key, 'otp_enrol')
  if u.tfa ~= '1' and on ~= '1' then
    redis.call('HSET', user_key, 'enrol_sid', string.sub(binding, 3), 'enrol_to', c.channel .. ':' .. c.to)
  end
  return {'OK', EVENTS, c.channel, c.to}
end
lock = second_factor_failed(tonumber(lock_failures), tonumber(lock_ms), 'otp')
if lock > 0 then return {'LOCKED', EVENTS, lock} end
return {'WRONG', EVENTS}

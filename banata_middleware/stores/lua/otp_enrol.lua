-- Confirms an enrolment in codes by message (Flows.verify_otp): the code sent to the new address
-- proves it reaches the user. The code is used up here, BEFORE the record store writes the
-- factor: a crash between leaves a code used and no factor (the user asks for another), never a
-- factor that nobody confirmed. A wrong code counts toward the user's temporary lock, as any
-- wrong second factor does.
-- Fields: hot_ops.OtpEnrol (otp_key: the user's code; session_key: the caller's).
-- Returns OK + channel + address, GONE (no live session), LOCKED + lock end, or WRONG.
local u = hash(user_key)
local s = hash(session_key)
if not live(s) or tonumber(s.created or '0') <= tonumber(u.revoked_at or '0') then return {'GONE', EVENTS} end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
local c = otp_take(otp_key, binding, 'enrol', code_hash)
if c then
  redis.call('HDEL', user_key, 'otp_enrol')
  return {'OK', EVENTS, c.channel, c.to}
end
lock = second_factor_failed(tonumber(lock_failures), tonumber(lock_ms), 'otp')
if lock > 0 then return {'LOCKED', EVENTS, lock} end
return {'WRONG', EVENTS}

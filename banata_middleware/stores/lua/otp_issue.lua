-- A one-time code sent by message (Flows.send_otp): stores its keyed hash as the user's ONE live
-- code, replacing any earlier one in the same step (closes "a resend racing a verify leaves two
-- live codes": the earlier code is gone the instant the new one exists), and counts the send
-- against the user's resend throttle in the same step (closes "parallel sends slip past the limit").
-- The code is sent after this; mode 'void' undoes it when the sender failed: the code (if it is
-- still this one) and its send are removed, so a failed delivery neither blocks a retry nor
-- leaves a code nobody received.
-- Fields: hot_ops.OtpIssue (otp_key: the user's code; sends_key: a sorted set, send id -> time).
-- Returns OK, LOCKED + lock end, or THROTTLED + when a send is allowed again (ms).
if mode == 'void' then
  if redis.call('HGET', otp_key, 'h') == code_hash then redis.call('DEL', otp_key) end
  redis.call('ZREM', sends_key, send_id)
  return {'OK', EVENTS}
end
local u = hash(user_key)
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
local interval, limit, window = tonumber(resend_interval_ms), tonumber(sends_per_window), tonumber(window_ms)
redis.call('ZREMRANGEBYSCORE', sends_key, '-inf', NOW - window)
local last = redis.call('ZRANGE', sends_key, -1, -1, 'WITHSCORES')
-- The interval holds back a RESEND: while the last code is live and unused. Once it was used (an
-- enrolment confirmed, a sign-in answered), the next code may follow at once; the cap still counts it.
if last[2] and NOW - tonumber(last[2]) < interval and redis.call('EXISTS', otp_key) == 1 then
  return {'THROTTLED', EVENTS, tonumber(last[2]) + interval}
end
if redis.call('ZCARD', sends_key) >= limit then
  local first = redis.call('ZRANGE', sends_key, 0, 0, 'WITHSCORES')
  return {'THROTTLED', EVENTS, tonumber(first[2]) + window}
end
local ttl = tonumber(ttl_ms)
redis.call('DEL', otp_key)
redis.call('HSET', otp_key, 'h', code_hash, 'bind', binding, 'purpose', purpose, 'exp', NOW + ttl,
  'channel', channel, 'to', address)
redis.call('PEXPIRE', otp_key, ttl)
redis.call('ZADD', sends_key, NOW, send_id)
redis.call('PEXPIRE', sends_key, window)
-- Which session may confirm an enrolment (verify-otp reads it with the user, in its first round trip).
if purpose == 'enrol' then
  redis.call('HSET', user_key, 'otp_enrol', string.sub(binding, 3))
else
  redis.call('HDEL', user_key, 'otp_enrol')
end
audit('two_factor.otp_sent', '', channel .. ':' .. purpose)
return {'OK', EVENTS}

-- A one-time code sent by message (Flows.send_otp): stores its keyed hash as the user's ONE live
-- code, replacing any earlier one in the same step (closes "a resend racing a verify leaves two
-- live codes": the earlier code is gone the instant the new one exists), and counts the send
-- against the user's resend throttle in the same step (closes "parallel sends slip past the limit").
-- The code is sent after this; mode 'void' undoes it when the sender failed: the code (if it is
-- still this one) and its send are removed, so a failed delivery neither blocks a retry nor
-- leaves a code nobody received.
-- KEYS: user, audit, code, sends (sorted set: send id -> time).
-- ARGV[6..]: mode (issue|void), send id, code hash, binding, purpose, ttl ms, channel, address,
-- resend interval ms, sends per window, window ms.
-- Returns OK, LOCKED + lock end, or THROTTLED + when a send is allowed again (ms).
if ARGV[6] == 'void' then
  if redis.call('HGET', KEYS[3], 'h') == ARGV[8] then redis.call('DEL', KEYS[3]) end
  redis.call('ZREM', KEYS[4], ARGV[7])
  return {'OK', EVENTS}
end
local u = hash(KEYS[1])
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
local interval, limit, window = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', NOW - window)
local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
-- The interval holds back a RESEND: while the last code is live and unused. Once it was used (an
-- enrolment confirmed, a sign-in answered), the next code may follow at once; the cap still counts it.
if last[2] and NOW - tonumber(last[2]) < interval and redis.call('EXISTS', KEYS[3]) == 1 then
  return {'THROTTLED', EVENTS, tonumber(last[2]) + interval}
end
if redis.call('ZCARD', KEYS[4]) >= limit then
  local first = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
  return {'THROTTLED', EVENTS, tonumber(first[2]) + window}
end
local ttl = tonumber(ARGV[11])
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[3], 'h', ARGV[8], 'bind', ARGV[9], 'purpose', ARGV[10], 'exp', NOW + ttl,
  'channel', ARGV[12], 'to', ARGV[13])
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('ZADD', KEYS[4], NOW, ARGV[7])
redis.call('PEXPIRE', KEYS[4], window)
-- Which session may confirm an enrolment (verify-otp reads it with the user, in its first round trip).
if ARGV[10] == 'enrol' then
  redis.call('HSET', KEYS[1], 'otp_enrol', string.sub(ARGV[9], 3))
else
  redis.call('HDEL', KEYS[1], 'otp_enrol')
end
audit('two_factor.otp_sent', '', ARGV[12] .. ':' .. ARGV[10])
return {'OK', EVENTS}

-- The middleware's check of every protected request, in one round trip, reading only the fields
-- it decides on (never the password hash or the encrypted secret), and writing only 'seen'.
-- KEYS: user, session, challenge. ARGV: now, want session, want challenge.
-- Returns: tfa, revoked_at, session exp, created, aal, mfa, challenge exp, created (nil = absent).
local u = redis.call('HMGET', KEYS[1], 'tfa', 'revoked_at')
local s = {false, false, false, false, false}
local c = {false, false}
if ARGV[2] == '1' then s = redis.call('HMGET', KEYS[2], 'exp', 'created', 'aal', 'mfa', 'seen') end
-- The session's last use ('seen', shown in the user's list of sessions), to the minute: at most one
-- write a minute per session, in this same round trip.
if s[1] and tonumber(s[1]) > NOW and NOW - tonumber(s[5] or '0') >= 60000 then
  redis.call('HSET', KEYS[2], 'seen', NOW)
end
if ARGV[3] == '1' then c = redis.call('HMGET', KEYS[3], 'exp', 'created') end
return {u[1], u[2], s[1], s[2], s[3], s[4], c[1], c[2]}

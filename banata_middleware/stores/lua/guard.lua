-- The middleware's check of every protected request, in one round trip, reading only the fields
-- it decides on (never the password hash or the encrypted secret).
-- Fields: hot_ops.Guard. Returns hot_ops.GuardReply's fields, in its order: tfa, revoked_at,
-- session exp, created, aal, mfa, challenge exp, created, session amr, auth (sign-in time, if
-- rotated since), seen (last use), rec (the user's copy is filled: user_fill.lua) (nil = absent).
-- Last use ('seen') is written here, coarsely (at most once per granularity), so that the idle
-- timeout costs no extra round trip; never for a session already idle past the aal 2 timeout (a
-- request must not revive it: Flows.guard refuses it from the 'seen' returned, the one before).
local u = redis.call('HMGET', user_key, 'tfa', 'revoked_at', 'rec')
local s = {false, false, false, false, false, false, false}
local c = {false, false}
if want_session == '1' then
  s = redis.call('HMGET', session_key, 'exp', 'created', 'aal', 'mfa', 'amr', 'auth', 'seen')
  if s[1] and tonumber(s[1]) > NOW then
    local idle, last = tonumber(idle_timeout_ms), tonumber(s[7] or s[2])
    local idled = idle > 0 and tonumber(s[3] or '1') >= 2 and NOW - last > idle
    if not idled and NOW - last >= tonumber(seen_every_ms) then redis.call('HSET', session_key, 'seen', NOW) end
  end
end
if want_challenge == '1' then c = redis.call('HMGET', challenge_key, 'exp', 'created') end
return {u[1], u[2], s[1], s[2], s[3], s[4], c[1], c[2], s[5], s[6], s[7], u[3]}

-- A user ends their own sessions: revoke-session (one), revoke-other-sessions (others),
-- revoke-sessions (all). It needs what a factor change needs (Flows.require_factor_change), checked
-- again here, atomically: the caller's session may have ended, or its second factor grown stale,
-- since the request was loaded. Only sessions in the user's index are ended.
-- KEYS: user, audit, caller's session, session index. ARGV[6..9]: mode (one|others|all), caller's
-- session id hash, factor change max age ms, the session id hash to end (mode one).
-- Reply: status, events, sessions ended, 1 if the caller's own session was one of them.
local refused = factor_change_refused(hash(KEYS[1]), KEYS[3], ARGV[8], '0')
if refused then return {refused, EVENTS} end
local mode, own = ARGV[6], ARGV[7]
local targets = {ARGV[9]}
if mode ~= 'one' then targets = redis.call('SMEMBERS', KEYS[4]) end
local prefix = string.sub(KEYS[3], 1, #KEYS[3] - #own)
local ended, current = 0, 0
for _, sid in ipairs(targets) do
  if not (mode == 'others' and sid == own) and redis.call('SREM', KEYS[4], sid) == 1 then
    redis.call('ZREM', KEYS[4] .. ':age', sid)
    if redis.call('DEL', prefix .. sid) == 1 then
      audit('session.revoked', sid, 'user')
      ended = ended + 1
    end
    if sid == own then current = 1 end
  end
end
return {'OK', EVENTS, ended, current}

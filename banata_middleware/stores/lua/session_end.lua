-- A user ends their own sessions: revoke-session (one), revoke-other-sessions (others),
-- revoke-sessions (all). It needs what a factor change needs (Flows.require_factor_change), checked
-- again here, atomically: the caller's session may have ended, or its second factor grown stale,
-- since the request was loaded. Only sessions in the user's index are ended.
-- Fields: hot_ops.SessionEnd (session_key and sid: the caller's; target_sid: mode one's).
-- Reply: status, events, sessions ended, 1 if the caller's own session was one of them.
local refused = factor_change_refused(hash(user_key), session_key, max_age_ms, '0')
if refused then return {refused, EVENTS} end
local targets = {target_sid}
if mode ~= 'one' then targets = redis.call('SMEMBERS', sessions_key) end
local prefix = string.sub(session_key, 1, #session_key - #sid)
local ended, current = 0, 0
for _, other in ipairs(targets) do
  if not (mode == 'others' and other == sid) and redis.call('SREM', sessions_key, other) == 1 then
    redis.call('ZREM', sessions_key .. ':age', other)
    if redis.call('DEL', prefix .. other) == 1 then
      audit('session.revoked', other, 'user')
      ended = ended + 1
    end
    if other == sid then current = 1 end
  end
end
return {'OK', EVENTS, ended, current}

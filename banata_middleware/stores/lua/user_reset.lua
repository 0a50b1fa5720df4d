-- Administrator actions on one user, before the record store makes the durable part
-- (Flows.reset_user: revoked_at, or the factors' removal; access is taken away first, where it is
-- enforced: R4-1). 'revoke' ends every session (sessions created at or before 'revoked_at' are
-- refused when loaded, so no session can slip through a scan) and every remembered device (bumping
-- 'gen' voids trust records, as disable does: "end every session" must not leave a browser that
-- signs in with the password alone at aal 2); 'reset' also ends a pending setup and clears the
-- temporary lock and attempt count, and the copy says 2FA is off. The lock is cleared by writing 0,
-- never deleted: a read-through fill whose read of the record is older (still locked) then finds
-- the field present and leaves it (user_fill.lua, R4-7).
-- Fields: hot_ops.UserReset.
local u = hash(user_key)
redis.call('HSET', user_key, 'revoked_at', NOW, 'gen', tonumber(u.gen or '0') + 1)
audit('session.revoked', '', 'all')
if mode == 'reset' then
  redis.call('HDEL', user_key, 'pending_secret', 'pending_sid', 'pending_kid', 'pending_name')
  redis.call('HSET', user_key, 'tfa', '0', 'codes_kid', '', 'fails', 0, 'lock_until', 0)
  redis.call('DEL', pending_codes_key)
end
return {'OK', EVENTS}

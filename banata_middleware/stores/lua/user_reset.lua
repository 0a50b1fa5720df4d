-- Administrator actions on one user, atomically. 'revoke' ends every session (sessions created
-- at or before 'revoked_at' are refused when loaded, so no session can slip through a scan) and
-- every remembered device (bumping 'gen' voids trust records, as disable does: "end every
-- session" must not leave a browser that signs in with the password alone at aal 2);
-- 'reset' also removes the second factor, every passkey (so no factor an intruder planted
-- survives), and clears locks and failure counts. Returns the removed credential ids, whose
-- index entries (other slots) the caller then releases.
-- KEYS: user, audit, backup codes, pending backup codes, passkeys. ARGV[6]: mode (revoke|reset).
local u = hash(KEYS[1])
redis.call('HSET', KEYS[1], 'revoked_at', NOW, 'gen', tonumber(u.gen or '0') + 1)
audit('session.revoked', '', 'all')
if ARGV[6] == 'reset' then
  redis.call('HDEL', KEYS[1], 'secret', 'pending_secret', 'last_step', 'lock_until')
  redis.call('HSET', KEYS[1], 'tfa', '0', 'fails', 0, 'streak', 0)
  redis.call('DEL', KEYS[3], KEYS[4])
  audit('two_factor.reset_by_admin')
  local removed = redis.call('HKEYS', KEYS[5])
  redis.call('DEL', KEYS[5])
  for _, id in ipairs(removed) do audit('passkey.deleted', '', id) end
  return {'OK', EVENTS, removed}
end
return {'OK', EVENTS, {}}

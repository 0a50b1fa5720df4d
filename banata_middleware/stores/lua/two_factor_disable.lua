-- 'disable'. Mode 'confirmed': after the record store removed the factor and codes (Flows.disable:
-- removal is written there first, so a crash between leaves no factor behind a copy that says 2FA
-- is off). Mode 'pending' (no factor yet: a setup is cancelled): the factor-change rule is
-- re-checked here, since the owner may have confirmed the setup (which ends every other session)
-- after this request was loaded. Either way the copy says 2FA is off, a pending setup ends, and
-- bumping 'gen' voids trusted devices.
-- KEYS: user, audit, pending backup codes, session. ARGV[6]: session id hash; ARGV[7]: factor change
-- max age ms; ARGV[8]: mode (confirmed|pending).
local u = hash(KEYS[1])
if ARGV[8] == 'pending' then
  local refused = factor_change_refused(u, KEYS[4], ARGV[7], '1')
  if refused then return {refused, EVENTS} end
  if u.tfa == '1' or not u.pending_secret then return {'NOT_ENABLED', EVENTS} end
end
redis.call('HDEL', KEYS[1], 'pending_secret', 'pending_sid', 'pending_kid')
redis.call('HSET', KEYS[1], 'tfa', '0', 'codes_kid', '', 'gen', tonumber(u.gen or '0') + 1)
redis.call('DEL', KEYS[3])
return {'OK', EVENTS}

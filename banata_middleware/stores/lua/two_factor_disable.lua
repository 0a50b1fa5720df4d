-- 'disable'. Mode 'confirmed': after the record store removed the factor and codes (Flows.disable:
-- removal is written there first, so a crash between leaves no factor behind a copy that says 2FA
-- is off). Mode 'pending' (no factor yet: a setup is cancelled): the factor-change rule is
-- re-checked here, since the owner may have confirmed the setup (which ends every other session)
-- after this request was loaded. Either way the copy says 2FA is off, a pending setup ends, and
-- bumping 'gen' voids trusted devices.
-- Fields: hot_ops.TwoFactorDisable.
local u = hash(user_key)
if mode == 'pending' then
  local refused = factor_change_refused(u, session_key, max_age_ms, '1')
  if refused then return {refused, EVENTS} end
  if u.tfa == '1' or not u.pending_secret then return {'NOT_ENABLED', EVENTS} end
end
redis.call('HDEL', user_key, 'pending_secret', 'pending_sid', 'pending_kid')
redis.call('HSET', user_key, 'tfa', '0', 'codes_kid', '', 'gen', tonumber(u.gen or '0') + 1)
redis.call('DEL', pending_codes_key)
return {'OK', EVENTS}

-- A user forgets trusted devices: one (its record and index entry go) or all (bumping 'gen' voids
-- every trust record, those made before the index existed too). It needs what a factor change
-- needs, checked again here atomically (factor_change_refused), as session_end.lua does.
-- Fields: hot_ops.TrustEnd (session_key and sid: the caller's; trust_key: the record to forget in
-- mode one, any trust key of the user for all). Reply: status, events, devices forgotten.
local u = hash(user_key)
local refused = factor_change_refused(u, session_key, max_age_ms, '0')
if refused then return {refused, EVENTS} end
if mode == 'one' then
  local tid = key_id(trust_key)
  if redis.call('ZREM', devices_key, tid) == 0 then return {'OK', EVENTS, 0} end
  redis.call('DEL', trust_key)
  audit('trusted_device.revoked', sid, tid)
  return {'OK', EVENTS, 1}
end
return {'OK', EVENTS, forget_all_devices(u, devices_key, trust_key, sid)}

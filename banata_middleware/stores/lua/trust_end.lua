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
local prefix = string.sub(trust_key, 1, #trust_key - #key_id(trust_key))
local forgotten = 0
for _, tid in ipairs(redis.call('ZRANGE', devices_key, 0, -1)) do
  forgotten = forgotten + redis.call('DEL', prefix .. tid)
end
redis.call('DEL', devices_key)
redis.call('HSET', user_key, 'gen', tonumber(u.gen or '0') + 1)
audit('trusted_device.revoked', sid, 'all')
return {'OK', EVENTS, forgotten}

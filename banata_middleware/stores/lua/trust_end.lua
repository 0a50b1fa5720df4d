-- A user forgets trusted devices: one (its record and index entry go) or all (bumping 'gen' voids
-- every trust record, those made before the index existed too). It needs what a factor change
-- needs, checked again here atomically (factor_change_refused), as session_end.lua does.
-- KEYS: user, audit, caller's session, trusted devices index, the trust record to forget (mode one;
-- any trust key of the user for all). ARGV[6..8]: mode (one|all), caller's session id hash, factor
-- change max age ms. Reply: status, events, devices forgotten.
local u = hash(KEYS[1])
local refused = factor_change_refused(u, KEYS[3], ARGV[8], '0')
if refused then return {refused, EVENTS} end
if ARGV[6] == 'one' then
  local tid = key_id(KEYS[5])
  if redis.call('ZREM', KEYS[4], tid) == 0 then return {'OK', EVENTS, 0} end
  redis.call('DEL', KEYS[5])
  audit('trusted_device.revoked', ARGV[7], tid)
  return {'OK', EVENTS, 1}
end
local prefix = string.sub(KEYS[5], 1, #KEYS[5] - #key_id(KEYS[5]))
local forgotten = 0
for _, tid in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  forgotten = forgotten + redis.call('DEL', prefix .. tid)
end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[1], 'gen', tonumber(u.gen or '0') + 1)
audit('trusted_device.revoked', ARGV[7], 'all')
return {'OK', EVENTS, forgotten}

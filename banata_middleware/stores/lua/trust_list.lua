-- The user's live trusted devices, for their list (SessionFlows.list_trusted_devices): a record
-- counts while it has not expired and was made under the user's current 'gen' (disable, an
-- administrator's revoke, "forget all" bump it). Entries of ended records are dropped here.
-- Fields: hot_ops.TrustList (trust_key: any trust key of the user, its id part ignored).
-- Returns {trust id hash, its fields as HGETALL gives them, ...}.
local gen = redis.call('HGET', user_key, 'gen') or '0'
local prefix = string.sub(trust_key, 1, #trust_key - #key_id(trust_key))
local out = {}
for _, tid in ipairs(redis.call('ZRANGE', devices_key, 0, -1)) do
  local flat = redis.call('HGETALL', prefix .. tid)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  if live(t) and t.gen == gen then
    out[#out + 1] = tid
    out[#out + 1] = flat
  else
    redis.call('ZREM', devices_key, tid)
  end
end
return out

-- The user's live trusted devices, for their list (SessionFlows.list_trusted_devices): a record
-- counts while it has not expired and was made under the user's current 'gen' (disable, an
-- administrator's revoke, "forget all" bump it). Entries of ended records are dropped here.
-- KEYS: user, trusted devices index, a trust key of the user (its id part is ignored). ARGV: now.
-- Returns {trust id hash, its fields as HGETALL gives them, ...}.
local gen = redis.call('HGET', KEYS[1], 'gen') or '0'
local prefix = string.sub(KEYS[3], 1, #KEYS[3] - #key_id(KEYS[3]))
local out = {}
for _, tid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local flat = redis.call('HGETALL', prefix .. tid)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  if live(t) and t.gen == gen then
    out[#out + 1] = tid
    out[#out + 1] = flat
  else
    redis.call('ZREM', KEYS[2], tid)
  end
end
return out

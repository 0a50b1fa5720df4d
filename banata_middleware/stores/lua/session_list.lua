-- The user's live sessions, for their list (SessionFlows.list_sessions). Members of the index whose
-- session ended (expired, signed out, revoked) are dropped from it here.
-- KEYS: user, session index, a session key of the user (its id part is ignored: each session's key
-- is built from it, same user, same hash tag, same slot). ARGV: now.
-- Returns {session id hash, its fields as HGETALL gives them, ...}.
local revoked = tonumber(redis.call('HGET', KEYS[1], 'revoked_at') or '0')
local prefix = string.sub(KEYS[3], 1, #KEYS[3] - #key_id(KEYS[3]))
local out = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local flat = redis.call('HGETALL', prefix .. sid)
  local s = {}
  for i = 1, #flat, 2 do s[flat[i]] = flat[i + 1] end
  if live(s) and tonumber(s.created or '0') > revoked then
    out[#out + 1] = sid
    out[#out + 1] = flat
  else
    redis.call('SREM', KEYS[2], sid)
    redis.call('ZREM', KEYS[2] .. ':age', sid)
  end
end
return out

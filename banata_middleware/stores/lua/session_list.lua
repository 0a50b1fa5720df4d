-- The user's live sessions, for their list (SessionFlows.list_sessions). Members of the index whose
-- session ended (expired, signed out, revoked) are dropped from it here.
-- Fields: hot_ops.SessionList (session_key: any session key of the user, its id part ignored: each
-- session's key is built from it, same user, same hash tag, same slot).
-- Returns {session id hash, its fields as HGETALL gives them, ...}.
local revoked = tonumber(redis.call('HGET', user_key, 'revoked_at') or '0')
local prefix = string.sub(session_key, 1, #session_key - #key_id(session_key))
local out = {}
for _, sid in ipairs(redis.call('SMEMBERS', sessions_key)) do
  local flat = redis.call('HGETALL', prefix .. sid)
  local s = {}
  for i = 1, #flat, 2 do s[flat[i]] = flat[i + 1] end
  if live(s) and tonumber(s.created or '0') > revoked then
    out[#out + 1] = sid
    out[#out + 1] = flat
  else
    redis.call('SREM', sessions_key, sid)
    redis.call('ZREM', sessions_key .. ':age', sid)
  end
end
return out

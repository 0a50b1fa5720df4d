-- Rename or delete one of the user's own passkeys. The name is changed inside the stored record
-- here, not rewritten from Python, so a rename cannot roll back a concurrent sign-count update.
-- KEYS: user, audit, passkeys, session. ARGV[6..9]: mode (rename|delete), credential id, new name,
-- factor change max age ms.
local refused = factor_change_refused(hash(KEYS[1]), KEYS[4], ARGV[9], '0')
if refused then return {refused, EVENTS} end
local raw = redis.call('HGET', KEYS[3], ARGV[7])
if not raw then return {'GONE', EVENTS} end
if ARGV[6] == 'delete' then
  redis.call('HDEL', KEYS[3], ARGV[7])
  audit('passkey.deleted', '', ARGV[7])
  return {'OK', EVENTS, raw}
end
local p = cjson.decode(raw)
p.name = ARGV[8]
raw = cjson.encode(p)
redis.call('HSET', KEYS[3], ARGV[7], raw)
return {'OK', EVENTS, raw}

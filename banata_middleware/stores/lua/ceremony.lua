-- A WebAuthn ceremony (challenge + type + user), bound to one browser by the banata.passkey cookie.
-- 'take' reads and deletes in one step: a challenge can be answered once, even by parallel requests.
-- KEYS: ceremony key. ARGV: now, mode (put|take), ttl ms, record JSON.
if ARGV[2] == 'put' then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3])
  return ''
end
local value = redis.call('GET', KEYS[1])
if not value then return '' end
redis.call('DEL', KEYS[1])
return value

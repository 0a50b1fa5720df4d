-- 'disable': removes secret, codes and replay state together; bumping 'gen' voids trusted
-- devices, and a challenge answered after this sees tfa ~= '1' and fails.
-- KEYS: user, audit, backup codes, pending backup codes, session. ARGV[6]: session id hash;
-- ARGV[7]: factor change max age ms.
local u = hash(KEYS[1])
local refused = factor_change_refused(u, KEYS[5], ARGV[7], '1')
if refused then return {refused, EVENTS} end
if u.tfa ~= '1' and not u.pending_secret then return {'NOT_ENABLED', EVENTS} end
redis.call('HDEL', KEYS[1], 'secret', 'pending_secret', 'last_step')
redis.call('HSET', KEYS[1], 'tfa', '0', 'gen', tonumber(u.gen or '0') + 1)
redis.call('DEL', KEYS[3], KEYS[4])
if u.tfa == '1' then audit('two_factor.disabled', ARGV[6]) end
return {'OK', EVENTS}

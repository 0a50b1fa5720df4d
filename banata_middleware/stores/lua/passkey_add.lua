-- Stores a verified new passkey. KEYS: user, audit, passkeys, session. ARGV[6..8]: credential id,
-- JSON record, factor change max age ms.
local refused = factor_change_refused(hash(KEYS[1]), KEYS[4], ARGV[8], '0')
if refused then return {refused, EVENTS} end
if redis.call('HEXISTS', KEYS[3], ARGV[6]) == 1 then return {'EXISTS', EVENTS} end
redis.call('HSET', KEYS[3], ARGV[6], ARGV[7])
audit('passkey.registered', '', ARGV[6])
return {'OK', EVENTS}

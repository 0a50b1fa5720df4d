-- Stores a verified new passkey. KEYS: user, audit, passkeys. ARGV[6..7]: credential id, JSON record.
if redis.call('HEXISTS', KEYS[3], ARGV[6]) == 1 then return {'EXISTS', EVENTS} end
redis.call('HSET', KEYS[3], ARGV[6], ARGV[7])
audit('passkey.registered', '', ARGV[6])
return {'OK', EVENTS}

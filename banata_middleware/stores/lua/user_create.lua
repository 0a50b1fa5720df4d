-- A built-in user's record. KEYS: user, audit. ARGV[6..8]: email, name, password hash.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'EXISTS', EVENTS} end
redis.call('HSET', KEYS[1], 'email', ARGV[6], 'name', ARGV[7], 'pw', ARGV[8], 'created', NOW)
return {'OK', EVENTS}

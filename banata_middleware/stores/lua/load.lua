-- Everything one request needs about a user, in one round trip: the user hash, the session and/or
-- pending challenge named by its cookies, the hashes of a pending setup's backup codes (what its
-- confirmation writes to the record store; none without a setup).
-- KEYS: user, session, challenge, pending backup codes. ARGV: now, want session, want challenge.
local s, c = {}, {}
if ARGV[2] == '1' then s = redis.call('HGETALL', KEYS[2]) end
if ARGV[3] == '1' then c = redis.call('HGETALL', KEYS[3]) end
return {redis.call('HGETALL', KEYS[1]), s, c, redis.call('SMEMBERS', KEYS[4])}

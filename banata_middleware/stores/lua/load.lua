-- Everything one request needs about a user, in one round trip: the user hash, the session and/or
-- pending challenge named by its cookies, the hashes of a pending setup's backup codes (what its
-- confirmation writes to the record store; none without a setup).
-- Fields: hot_ops.Load. Returns hot_ops.LoadReply's fields, in its order (the hashes flat).
local s, c = {}, {}
if want_session == '1' then s = redis.call('HGETALL', session_key) end
if want_challenge == '1' then c = redis.call('HGETALL', challenge_key) end
return {redis.call('HGETALL', user_key), s, c, redis.call('SMEMBERS', pending_codes_key)}

-- Sign-in from a trusted device: the trust record is consumed and replaced (rotated) in the same
-- step that creates the session, so a copied trust cookie works at most once.
-- KEYS: user, audit, old trust record, new trust record, new session, session index.
-- ARGV[6..9]: trust ttl ms, new session id hash, session spec (see new_session), remember me.
local t = hash(KEYS[3])
local u = hash(KEYS[1])
if not live(t) or u.tfa ~= '1' or t.gen ~= (u.gen or '0') then return {'GONE', EVENTS} end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
redis.call('DEL', KEYS[3])
local ttl = tonumber(ARGV[6])
redis.call('HSET', KEYS[4], 'exp', NOW + ttl, 'gen', t.gen, 'mfa', t.mfa)
redis.call('PEXPIRE', KEYS[4], ttl)
new_session(KEYS[5], KEYS[6], ARGV[7], ARGV[8], 2, t.mfa, ARGV[9])
return {'OK', EVENTS}

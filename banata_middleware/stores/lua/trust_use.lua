-- Sign-in from a trusted device: the trust record is consumed and replaced (rotated) in the same
-- step that creates the session, so a copied trust cookie works at most once. The new record keeps
-- the old one's expiry: trust lasts trust_device_ttl from the verification that created it, however
-- often it is used (renewing it on each use meant it never ended for a regular user).
-- KEYS: user, audit, old trust record, new trust record, new session, session index, trusted
-- devices index (the device keeps its place in it under the new id).
-- ARGV[6..8]: new session id hash, session spec (see new_session), remember me.
-- Reply: status, events, trust expiry ms.
local t = hash(KEYS[3])
local u = hash(KEYS[1])
if not live(t) or u.tfa ~= '1' or t.gen ~= (u.gen or '0') then return {'GONE', EVENTS} end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[4], 'exp', t.exp, 'gen', t.gen, 'mfa', t.mfa, 'created', t.created or t.mfa,
  'ip', ARGV[2], 'ua', ARGV[3], 'seen', NOW)
redis.call('PEXPIRE', KEYS[4], tonumber(t.exp) - NOW)
redis.call('ZREM', KEYS[7], key_id(KEYS[3]))
index_device(KEYS[7], KEYS[4], tonumber(t.exp) - NOW, t.gen)
new_session(KEYS[5], KEYS[6], ARGV[6], ARGV[7], 2, t.mfa, ARGV[8])
return {'OK', EVENTS, tonumber(t.exp)}

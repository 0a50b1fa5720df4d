-- Sign-in from a trusted device: the trust record is consumed and replaced (rotated) in the same
-- step that creates the session, so a copied trust cookie works at most once. The new record keeps
-- the old one's expiry: trust lasts trust_device_ttl from the verification that created it, however
-- often it is used (renewing it on each use meant it never ended for a regular user).
-- Fields: hot_ops.TrustUse (the device keeps its place in the trusted devices index under the new
-- id; the new session's spec and amr: see new_session). Reply: status, events, trust expiry ms.
local t = hash(trust_key)
local u = hash(user_key)
if not live(t) or u.tfa ~= '1' or t.gen ~= (u.gen or '0') then return {'GONE', EVENTS} end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
redis.call('DEL', trust_key)
redis.call('HSET', new_trust_key, 'exp', t.exp, 'gen', t.gen, 'mfa', t.mfa, 'created', t.created or t.mfa,
  'ip', ip, 'ua', user_agent, 'seen', NOW)
redis.call('PEXPIRE', new_trust_key, tonumber(t.exp) - NOW)
redis.call('ZREM', devices_key, key_id(trust_key))
index_device(devices_key, new_trust_key, tonumber(t.exp) - NOW, t.gen)
new_session(new_session_key, sessions_key, new_sid, session_spec, 2, t.mfa, remember, amr)
return {'OK', EVENTS, tonumber(t.exp)}

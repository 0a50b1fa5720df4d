-- A verified passkey assertion becomes a session (or, without user verification for a user with
-- 2FA, a pending challenge). Closes the races "two assertions with the same sign count both pass"
-- (the count is compared and raised here) and "the pending challenge is answered twice".
-- A count that does not grow, when either side is non-zero, is a suspected clone: refused.
-- KEYS: user, audit, passkeys, pending challenge, new session, session index, new challenge.
-- ARGV[6..14]: credential id, new sign count, mode (second_factor|passwordless), user verified,
-- new session id hash, session ttl ms, challenge ttl ms, challenge attempts, remember me.
local raw = redis.call('HGET', KEYS[3], ARGV[6])
if not raw then return {'NOT_FOUND', EVENTS} end
local u = hash(KEYS[1])
local ch = {}
if ARGV[8] == 'second_factor' then
  ch = hash(KEYS[4])
  if not live(ch) then return {'GONE', EVENTS} end
end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
local p = cjson.decode(raw)
local stored, new = tonumber(p.signCount or 0), tonumber(ARGV[7])
if (stored > 0 or new > 0) and new <= stored then
  audit('passkey.clone_suspected', '', ARGV[6])
  return {'CLONE', EVENTS}
end
p.signCount = new
redis.call('HSET', KEYS[3], ARGV[6], cjson.encode(p))
audit('passkey.authenticated', ARGV[10], ARGV[6])
local ttl = tonumber(ARGV[11])
if ARGV[8] == 'second_factor' then
  redis.call('DEL', KEYS[4])
  redis.call('HSET', KEYS[1], 'fails', 0, 'streak', 0)
  new_session(KEYS[5], KEYS[6], ARGV[10], ttl, 2, NOW, ch.remember)
  return {'SESSION', EVENTS}
end
if ARGV[9] == '1' then
  new_session(KEYS[5], KEYS[6], ARGV[10], ttl, 2, NOW, ARGV[14])
  return {'SESSION', EVENTS}
end
if u.tfa == '1' then
  local cttl = tonumber(ARGV[12])
  redis.call('HSET', KEYS[7], 'exp', NOW + cttl, 'attempts', ARGV[13], 'remember', ARGV[14], 'created', NOW)
  redis.call('PEXPIRE', KEYS[7], cttl)
  return {'CHALLENGE', EVENTS}
end
new_session(KEYS[5], KEYS[6], ARGV[10], ttl, 1, 0, ARGV[14])
return {'SESSION', EVENTS}

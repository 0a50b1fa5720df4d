-- A second factor given by a signed-in user: enrolment (confirms the secret set up by 'enable')
-- or step-up (refreshes the session's mfa time). Closes the races "two enables, the code of one
-- confirms the other's secret" (the confirmed secret must be the one the code was checked
-- against) and "replayed or shared code used twice" (step and backup code consumed here).
-- KEYS: user, audit, session, backup codes, pending backup codes.
-- ARGV[6..12]: mode (enrol|stepup), method, proof, secret ciphertext checked against,
-- session id hash, failures before lock, lock ms.
local s = hash(KEYS[3])
if not live(s) then return {'GONE', EVENTS} end
local u = hash(KEYS[1])
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
local ok = false
if ARGV[6] == 'enrol' then
  if u.tfa == '1' then return {'ALREADY', EVENTS} end
  if not u.pending_secret then return {'NOT_ENABLED', EVENTS} end
  if ARGV[8] ~= '' and u.pending_secret == ARGV[9] and tonumber(ARGV[8]) > tonumber(u.last_step or '-1') then
    ok = true
    redis.call('HSET', KEYS[1], 'tfa', '1', 'secret', u.pending_secret, 'last_step', ARGV[8],
      'gen', tonumber(u.gen or '0') + 1)
    redis.call('HDEL', KEYS[1], 'pending_secret')
    if redis.call('EXISTS', KEYS[5]) == 1 then
      redis.call('RENAME', KEYS[5], KEYS[4])
    else
      redis.call('DEL', KEYS[4])
    end
    audit('two_factor.enabled', ARGV[10])
  end
else
  if u.tfa ~= '1' then return {'NOT_ENABLED', EVENTS} end
  ok = proof_ok(u, ARGV[7], ARGV[8], ARGV[9], KEYS[4])
  if ok then
    audit('two_factor.verified', ARGV[10], ARGV[7])
    if ARGV[7] == 'backup' then audit('two_factor.backup_code_used', ARGV[10]) end
  end
end
if ok then
  redis.call('HSET', KEYS[1], 'fails', 0, 'streak', 0)
  redis.call('HSET', KEYS[3], 'mfa', NOW, 'aal', 2)
  return {'OK', EVENTS, redis.call('SCARD', KEYS[4])}
end
lock = second_factor_failed(tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[7])
if lock > 0 then return {'LOCKED', EVENTS, lock} end
return {'WRONG', EVENTS}

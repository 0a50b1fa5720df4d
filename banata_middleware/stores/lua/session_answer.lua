-- A second factor given by a signed-in user: enrolment (confirms the secret set up by 'enable')
-- or step-up (refreshes the session's mfa time). Closes the races "two enables, the code of one
-- confirms the other's secret" (the confirmed secret must be the one the code was checked
-- against) and "replayed or shared code used twice" (step and backup code consumed here).
-- On success the session is rotated (a new id; the old one, which a thief may hold, ends here)
-- and enrolment ends every other session of the user: none of them passed the new factor.
-- KEYS: user, audit, session, backup codes, pending backup codes, new session, session index.
-- ARGV[6..14]: mode (enrol|stepup), method, proof, secret ciphertext checked against,
-- session id hash, failures before lock, lock ms, new session id hash, session spec (see new_session:
-- the rotated session keeps rememberMe's lifetime and counts toward the cap of sessions per user).
local s = hash(KEYS[3])
local u = hash(KEYS[1])
-- revoked_at: an administrator's "end every session" that ran after the caller was loaded.
if not live(s) or tonumber(s.created or '0') <= tonumber(u.revoked_at or '0') then return {'GONE', EVENTS} end
local lock = locked_until(u)
if lock > 0 then return {'LOCKED', EVENTS, lock} end
local ok = false
if ARGV[6] == 'enrol' then
  if u.tfa == '1' then return {'ALREADY', EVENTS} end
  if not u.pending_secret or u.pending_sid ~= ARGV[10] then return {'NOT_ENABLED', EVENTS} end
  if ARGV[8] ~= '' and u.pending_secret == ARGV[9] and tonumber(ARGV[8]) > tonumber(u.last_step or '-1') then
    ok = true
    redis.call('HSET', KEYS[1], 'tfa', '1', 'secret', u.pending_secret, 'last_step', ARGV[8],
      'gen', tonumber(u.gen or '0') + 1)
    redis.call('HDEL', KEYS[1], 'pending_secret', 'pending_sid')
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
  local ended = {}
  if ARGV[6] == 'enrol' then ended = redis.call('SMEMBERS', KEYS[7]) end
  ended[#ended + 1] = ARGV[10]
  -- The other sessions' keys are built here from the caller's: same user, same hash tag, same slot.
  local base = string.sub(KEYS[3], 1, #KEYS[3] - #ARGV[10])
  for _, sid in ipairs(ended) do
    if redis.call('DEL', base .. sid) == 1 then
      audit('session.revoked', sid, sid == ARGV[10] and 'rotated' or 'enrolment')
    end
    redis.call('SREM', KEYS[7], sid)
  end
  new_session(KEYS[6], KEYS[7], ARGV[13], ARGV[14], 2, NOW, s.remember or '0')
  if s.pwd then redis.call('HSET', KEYS[6], 'pwd', s.pwd) end
  return {'OK', EVENTS, redis.call('SCARD', KEYS[4])}
end
lock = second_factor_failed(tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[7])
if lock > 0 then return {'LOCKED', EVENTS, lock} end
return {'WRONG', EVENTS}

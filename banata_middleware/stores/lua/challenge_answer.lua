-- Answers a pending sign-in challenge with a TOTP step or a backup code hash, atomically:
-- closes the races "one code sent to many challenges at once gives many sessions" (the replay
-- step and the backup code are consumed here), "one challenge answered twice gives two sessions"
-- (the challenge is deleted here), "attempts counted by read-modify-write are lost under
-- parallel guesses", "2FA disabled between the check and the session" and "revoke-sessions
-- between the check and the answer" (challenge_refusal, shared with passkey_sign_in.lua).
-- KEYS: user, audit, challenge, backup codes, new session, session index, new trust record,
-- trusted devices index.
-- ARGV[6..14]: method (totp|backup), proof, secret ciphertext checked against, new session id
-- hash, session spec (see new_session), trust device (1|0), trust ttl ms, failures before lock, lock ms.
local ch = hash(KEYS[3])
local u = hash(KEYS[1])
local refusal = challenge_refusal(ch, u, ARGV[6])
if refusal then return refusal end
if u.tfa ~= '1' then
  redis.call('DEL', KEYS[3])
  return {'NOT_ENABLED', EVENTS}
end
if proof_ok(u, ARGV[6], ARGV[7], ARGV[8], KEYS[4]) then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'fails', 0, 'streak', 0)
  audit('two_factor.verified', ARGV[9], ARGV[6])
  if ARGV[6] == 'backup' then audit('two_factor.backup_code_used', ARGV[9]) end
  new_session(KEYS[5], KEYS[6], ARGV[9], ARGV[10], 2, NOW, ch.remember)
  if ARGV[11] == '1' then
    local ttl = tonumber(ARGV[12])
    redis.call('HSET', KEYS[7], 'exp', NOW + ttl, 'gen', u.gen or '0', 'mfa', NOW, 'created', NOW,
      'ip', ARGV[2], 'ua', ARGV[3])
    redis.call('PEXPIRE', KEYS[7], ttl)
    index_device(KEYS[8], KEYS[7], ttl, u.gen or '0')
  end
  return {'OK', EVENTS, redis.call('SCARD', KEYS[4])}
end
local lock = second_factor_failed(tonumber(ARGV[13]), tonumber(ARGV[14]), ARGV[6])
local attempts = redis.call('HINCRBY', KEYS[3], 'attempts', -1)
if attempts <= 0 then redis.call('DEL', KEYS[3]) end
if lock > 0 then return {'LOCKED', EVENTS, lock} end
if attempts <= 0 then return {'EXHAUSTED', EVENTS} end
return {'WRONG', EVENTS, attempts}

-- Answers a pending sign-in challenge, told the record store's verdict on the proof (the TOTP
-- step or backup code was consumed there first, by one conditional statement: Flows.verify),
-- atomically: closes the races "one challenge answered twice gives two sessions" (the challenge
-- is deleted here), "attempts counted by read-modify-write are lost under parallel guesses" and
-- "revoke-sessions between the check and the answer" (challenge_refusal, shared with
-- passkey_sign_in.lua). A refusal here after an accepted proof leaves the code used up and no
-- session: the safe side of the crash ordering.
-- A code sent by message (method 'otp') is decided here instead, by its keyed hash against the
-- user's one live code (otp_take): taken and answered in one step, so there is no window between.
-- KEYS: user, audit, challenge, new session, session index, new trust record, trusted devices index,
-- and for 'otp' the user's code (Keys.otp).
-- ARGV[6..14]: method (totp|backup|otp), outcome (ok|wrong; 'otp': decide here), new session id
-- hash, session spec (see new_session), trust device (1|0), trust ttl ms, failures before lock,
-- lock ms, amr of the new session (see new_session). For 'otp', ARGV[15..16]: binding, code hash.
-- ARGV[17]: '1' when the lock was audited already (see second_factor_failed; '' for 'otp').
local ch = hash(KEYS[3])
local u = hash(KEYS[1])
local refusal = challenge_refusal(ch, u, ARGV[6])
if refusal then return refusal end
local outcome = ARGV[7]
if outcome == 'otp' then outcome = otp_take(KEYS[8], ARGV[15], 'sign_in', ARGV[16]) and 'ok' or 'wrong' end
if outcome == 'ok' then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[1], 'fails', 0)
  new_session(KEYS[4], KEYS[5], ARGV[8], ARGV[9], 2, NOW, ch.remember, ARGV[14])
  if ARGV[10] == '1' then
    local ttl = tonumber(ARGV[11])
    redis.call('HSET', KEYS[6], 'exp', NOW + ttl, 'gen', u.gen or '0', 'mfa', NOW, 'created', NOW,
      'ip', ARGV[2], 'ua', ARGV[3])
    redis.call('PEXPIRE', KEYS[6], ttl)
    index_device(KEYS[7], KEYS[6], ttl, u.gen or '0')
  end
  return {'OK', EVENTS}
end
local lock = second_factor_failed(tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV[6], ARGV[17])
local attempts = redis.call('HINCRBY', KEYS[3], 'attempts', -1)
if attempts <= 0 then redis.call('DEL', KEYS[3]) end
if lock > 0 then return {'LOCKED', EVENTS, lock} end
if attempts <= 0 then return {'EXHAUSTED', EVENTS} end
return {'WRONG', EVENTS, attempts}

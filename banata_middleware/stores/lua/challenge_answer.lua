-- Answers a pending sign-in challenge, told the record store's verdict on the proof (the TOTP
-- step or backup code was consumed there first, by one conditional statement: Flows.verify),
-- atomically: closes the races "one challenge answered twice gives two sessions" (the challenge
-- is deleted here), "attempts counted by read-modify-write are lost under parallel guesses" and
-- "revoke-sessions between the check and the answer" (challenge_refusal, shared with
-- passkey_sign_in.lua). A refusal here after an accepted proof leaves the code used up and no
-- session: the safe side of the crash ordering.
-- A code sent by message (method 'otp') is decided here instead, by its keyed hash against the
-- user's one live code (otp_take): taken and answered in one step, so there is no window between.
-- Fields: hot_ops.ChallengeAnswer (the new session's spec and amr: see new_session; outcome 'otp':
-- decided here, by the code's binding and hash against otp_key, the user's code; lock_audited: see
-- second_factor_failed; record_generation: the record store's generation the proof was decided under).
local ch = hash(challenge_key)
local u = hash(user_key)
local refusal = challenge_refusal(ch, u, method)
if refusal then return refusal end
local verdict = outcome
if verdict == 'otp' then verdict = otp_take(otp_key, binding, 'sign_in', code_hash) and 'ok' or 'wrong' end
if verdict == 'ok' then
  redis.call('DEL', challenge_key)
  redis.call('HSET', user_key, 'fails', 0)
  new_session(new_session_key, sessions_key, new_sid, session_spec, 2, NOW, ch.remember, amr)
  -- Trust is made only under the record the proof was decided by: a factor taken away since (its
  -- generation seen by the copy, 'sgen') may be the one that proved this (R12-1).
  if trust == '1' and tonumber(u.sgen or '0') <= tonumber(record_generation) then
    local ttl = tonumber(trust_ttl_ms)
    redis.call('HSET', trust_key, 'exp', NOW + ttl, 'gen', u.gen or '0', 'mfa', NOW, 'created', NOW,
      'ip', ip, 'ua', user_agent)
    redis.call('PEXPIRE', trust_key, ttl)
    index_device(devices_key, trust_key, ttl, u.gen or '0')
  end
  return {'OK', EVENTS}
end
local lock = second_factor_failed(tonumber(lock_failures), tonumber(lock_ms), method, lock_audited)
local attempts = redis.call('HINCRBY', challenge_key, 'attempts', -1)
if attempts <= 0 then redis.call('DEL', challenge_key) end
if lock > 0 then return {'LOCKED', EVENTS, lock} end
if attempts <= 0 then return {'EXHAUSTED', EVENTS} end
return {'WRONG', EVENTS, attempts}

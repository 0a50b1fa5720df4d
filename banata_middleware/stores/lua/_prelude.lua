-- Prepended to every script when it is loaded, after the header that binds the operation's fields
-- (stores/hot_ops.py) to locals of the same names. now_ms is always the application Clock's time in
-- milliseconds (never Redis TIME: tests and the simulator move time).
-- Scripts that act on a user start with hot_ops.Head: user_key (the user hash), audit_key (the
-- user's audit stream), ip, user_agent, audit_len (the stream's length), user_id; the functions
-- below use them (in other scripts they are unset).
local NOW = tonumber(now_ms)
local EVENTS = {}

local function hash(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

local function live(rec)
  return rec.exp ~= nil and tonumber(rec.exp) > NOW
end

local function audit(kind, sid, detail)
  redis.call('XADD', audit_key, 'MAXLEN', '~', audit_len, '*', 'type', kind, 'userId', user_id,
    'at', now_ms, 'ip', ip, 'userAgent', user_agent, 'sessionId', sid or '', 'detail', detail or '')
  EVENTS[#EVENTS + 1] = kind
end

-- Past the cap of live sessions per user, the oldest are revoked (closes "a password holder piles
-- up thousands of sessions"). Besides the index (a set), a sorted set by creation time, the index's
-- key + ':age' (Keys.sessions_by_age; same hash tag, same slot), orders them. Only when it is over
-- the cap are the sessions that already ended (expired, signed out, revoked) dropped from it, so
-- that they never cost a live one its place; it holds at most cap + 1 entries.
local function cap_sessions(skey, index, sid, cap, ttl_ms)
  if cap <= 0 then return end
  local by_age = index .. ':age'
  redis.call('ZADD', by_age, NOW, sid)
  redis.call('PEXPIRE', by_age, ttl_ms)
  if redis.call('ZCARD', by_age) <= cap then return end
  local prefix = string.sub(skey, 1, #skey - #sid)
  local revoked = tonumber(redis.call('HGET', user_key, 'revoked_at') or '0')
  local alive = {}
  for _, other in ipairs(redis.call('ZRANGE', by_age, 0, -1)) do
    if other ~= sid then
      local rec = redis.call('HMGET', prefix .. other, 'exp', 'created')
      if rec[1] and tonumber(rec[1]) > NOW and tonumber(rec[2]) > revoked then
        alive[#alive + 1] = other
      else
        redis.call('ZREM', by_age, other)
        redis.call('SREM', index, other)
      end
    end
  end
  for i = 1, #alive - (cap - 1) do
    redis.call('DEL', prefix .. alive[i])
    redis.call('ZREM', by_age, alive[i])
    redis.call('SREM', index, alive[i])
    audit('session.revoked', alive[i], 'cap')
  end
end

-- The RFC 8176 methods of two 'amr' fields (space-separated) together, each once, in order.
local function merge_amr(a, b)
  local out, seen = {}, {}
  for m in string.gmatch((a or '') .. ' ' .. (b or ''), '%S+') do
    if not seen[m] then seen[m] = true; out[#out + 1] = m end
  end
  return table.concat(out, ' ')
end

-- spec: "<ttl ms if remembered>,<ttl ms if not>,<cap of live sessions per user>" (Flows.session_spec),
-- or a plain ttl in ms (the same for both, no cap). amr: how the user authenticated, RFC 8176
-- values space-separated ('pwd otp'; Flows.AMR_*), also the session.created event's detail.
local function new_session(skey, index, sid, spec, aal, mfa, remember, amr)
  local long, short, cap = string.match(tostring(spec), '^(%d+),(%d+),(%d+)$')
  if not long then long, short, cap = spec, spec, 0 end
  local ttl_ms = tonumber(long)
  if remember ~= '1' then ttl_ms = tonumber(short) end
  redis.call('HSET', skey, 'exp', NOW + ttl_ms, 'created', NOW, 'aal', aal, 'mfa', mfa, 'remember', remember,
    'amr', amr)
  redis.call('PEXPIRE', skey, ttl_ms)
  -- For the user's list of sessions (session_list.lua); 'seen' (last use) is refreshed by the guard
  -- (stores/redis.py SEEN_SCRIPT).
  redis.call('HSET', skey, 'ip', ip, 'ua', user_agent, 'seen', NOW)
  redis.call('SADD', index, sid)
  redis.call('PEXPIRE', index, tonumber(long))
  audit('session.created', sid, amr)
  cap_sessions(skey, index, sid, tonumber(cap), tonumber(long))
end

local function locked_until(u)
  local lock = tonumber(u.lock_until or '0')
  if lock > NOW then return lock end
  return 0
end

-- The one liveness rule for answering a pending sign-in challenge, whatever answers it (TOTP or
-- backup code: challenge_answer.lua; passkey: passkey_sign_in.lua). Returns nil when factor `by`
-- ('totp', 'backup', 'passkey') may answer `ch` for user `u`, else the reply to give:
-- GONE (absent, expired, created at or before revoke-sessions' 'revoked_at', no attempts left),
-- LOCKED, or SAME_FACTOR when `by` is the kind of factor that opened the challenge ('opened_by',
-- its kind before any ':detail'; only 'pwd' opens one today, challenge_create.lua): one factor
-- never counts as two (NIST SP 800-63B-4). A challenge without 'opened_by' predates the field,
-- when a passkey without user verification could open one: it counts as passkey-opened, so a
-- passkey cannot answer it (TOTP and backup codes still can); such a challenge lives minutes.
local function challenge_refusal(ch, u, by)
  if not live(ch) or tonumber(ch.created or '0') <= tonumber(u.revoked_at or '0')
      or tonumber(ch.attempts or '0') <= 0 then
    return {'GONE', EVENTS}
  end
  local lock = locked_until(u)
  if lock > 0 then return {'LOCKED', EVENTS, lock} end
  local opener = string.match(ch.opened_by or 'passkey', '^[^:]*')
  if opener == by then return {'SAME_FACTOR', EVENTS} end
  return nil
end

-- Counts one second-factor failure for the user; returns the lock's end when this one locks it
-- for a while. The consecutive-failure streak and the permanent lock at its ceiling (NIST SP
-- 800-63B's 100) are durable: the record store counts them (RecordFailure), before this runs.
-- audited = '1': this failure reached the ceiling, whose lock RecordFailure audited already in the
-- record store; the hot copy of the lock is set here without a second two_factor.locked event.
local function second_factor_failed(lock_failures, lock_ms, detail, audited)
  local fails = redis.call('HINCRBY', user_key, 'fails', 1)
  audit('two_factor.failed', nil, detail)
  if fails >= lock_failures then
    local lock = NOW + lock_ms
    redis.call('HSET', user_key, 'lock_until', lock, 'fails', 0)
    if audited ~= '1' then audit('two_factor.locked', nil, detail) end
    return lock
  end
  return 0
end

-- A factor change (Flows.require_factor_change) re-checked in the script that makes it: the
-- request may have been loaded before the user confirmed 2FA (which ended its session) or before
-- its second factor grew stale. Closes "a password-only request in flight commits after enrolment".
-- Returns nil when allowed, else NO_SESSION | FRESH_TWO_FACTOR | FRESH_PASSWORD.
local function factor_change_refused(u, skey, max_age_ms, password_given)
  local s = hash(skey)
  if not live(s) or tonumber(s.created or '0') <= tonumber(u.revoked_at or '0') then return 'NO_SESSION' end
  local oldest = NOW - tonumber(max_age_ms)
  if u.tfa == '1' then
    if tonumber(s.aal or '1') < 2 or tonumber(s.mfa or '0') < oldest then return 'FRESH_TWO_FACTOR' end
  elseif password_given ~= '1' and math.max(tonumber(s.pwd or '0'), tonumber(s.mfa or '0')) < oldest then
    return 'FRESH_PASSWORD'
  end
  return nil
end

-- The last ':'-separated part of a key: the id (a hash) of a session or trust record key.
local function key_id(key)
  return string.match(key, '([^:]+)$')
end

-- The index of a user's trusted devices (Keys.trusted_devices, a sorted set: trust id -> last use),
-- so that the user can list and forget them (trust_list.lua, trust_end.lua). Bounded: past the cap,
-- entries whose record ended (expired, forgotten, voided by a 'gen' bump) are dropped, then the
-- least recently used devices are forgotten (their browsers ask for the second factor again).
local TRUSTED_DEVICES_CAP = 20
local function index_device(index, tkey, ttl_ms, gen)
  local tid = key_id(tkey)
  redis.call('ZADD', index, NOW, tid)
  if redis.call('PTTL', index) < ttl_ms then redis.call('PEXPIRE', index, ttl_ms) end
  if redis.call('ZCARD', index) <= TRUSTED_DEVICES_CAP then return end
  local prefix = string.sub(tkey, 1, #tkey - #tid)
  for _, other in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local rec = redis.call('HMGET', prefix .. other, 'exp', 'gen')
    if not rec[1] or tonumber(rec[1]) <= NOW or rec[2] ~= gen then redis.call('ZREM', index, other) end
  end
  local over = redis.call('ZCARD', index) - TRUSTED_DEVICES_CAP
  if over <= 0 then return end
  for _, old in ipairs(redis.call('ZRANGE', index, 0, over - 1)) do
    redis.call('DEL', prefix .. old)
    redis.call('ZREM', index, old)
    audit('trusted_device.revoked', '', 'cap')
  end
end

-- Every trusted device of the user forgotten (trust_end.lua's 'all'; factor_change.lua when a
-- second factor is removed): bumping 'gen' voids every trust record, those made before the index
-- existed too; the indexed records and the index go, and one 'all' event says so. tkey: any trust
-- key of the user (its prefix names the others). Returns how many indexed records it deleted.
local function forget_all_devices(u, index, tkey, sid)
  local prefix = string.sub(tkey, 1, #tkey - #key_id(tkey))
  local forgotten = 0
  for _, tid in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    forgotten = forgotten + redis.call('DEL', prefix .. tid)
  end
  redis.call('DEL', index)
  redis.call('HSET', user_key, 'gen', tonumber(u.gen or '0') + 1)
  audit('trusted_device.revoked', sid, 'all')
  return forgotten
end

-- The user's one live code sent by message (Keys.otp, written by otp_issue.lua), when it is bound
-- to `bind` (the challenge or session that asked for it), was sent for `purpose` (sign_in |
-- step_up | enrol), is live and its keyed hash is one of `h` (space-separated: a sign-in or step-up
-- code's hash is bound to the address it went to, and the flow sends one per address the record
-- has now, so a code sent to an address since removed or replaced matches none: R6-5): then it is
-- used up here, in the script that acts on it, so two verifies of one code cannot both see it
-- unused. Returns the code's record, or nil. The hashes are HMACs under a key Redis never holds:
-- how long '==' takes tells nothing of a code.
local function otp_take(key, bind, purpose, h)
  local c = hash(key)
  if c.bind ~= bind or c.purpose ~= purpose or not live(c) then return nil end
  for candidate in string.gmatch(h, '%S+') do
    if candidate == c.h then
      redis.call('DEL', key)
      return c
    end
  end
  return nil
end

-- 2FA turns on (an enrolment confirmed, an import, the copy's repair of either): an enrolment in
-- codes by message still pending ends with it, its code too (R6-1). It was begun under "2FA off",
-- when the password was the factor-change rule; with 2FA on, adding a factor needs a fresh second
-- factor, so it is begun again under that rule (flows/otp.py, enable).
local function otp_enrolment_ends(key)
  redis.call('HDEL', user_key, 'otp_enrol')
  if redis.call('HGET', key, 'purpose') == 'enrol' then redis.call('DEL', key) end
end

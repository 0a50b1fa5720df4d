-- The password throttle of one account, shared by sign-in and the password re-checks of a signed-in
-- user (enable, disable, get-totp-uri, generate-backup-codes). Counting and deciding in one step
-- means parallel wrong passwords cannot slip past a limit between a read and a write.
-- Failures count per (account, client address): a guesser at one address blocks only that pair,
-- never the owner elsewhere. They also count per account over every address: past that limit the
-- account is not locked, the bar is raised: only addresses that signed in to it before (within the
-- known-address lifetime) may still try, so a guesser spread over many addresses is stopped too.
-- Fields: hot_ops.PasswordGate (known_key: a sorted set, address hash -> last sign-in).
-- Returns {ms until allowed or 0, 1 if the address is known else 0}.
local window, addr, known_ttl = tonumber(window_ms), address, tonumber(known_ttl_ms)
if mode == 'known' then
  redis.call('ZREMRANGEBYSCORE', known_key, '-inf', NOW - known_ttl)
  -- At most 100 addresses; a full list keeps the ones it has (each renewed at its next sign-in) and
  -- takes no new one until one expires. Evicting the oldest instead let whoever has the password
  -- alone (2FA on: recorded before the second factor) push the owner's addresses out.
  if redis.call('ZSCORE', known_key, addr) or redis.call('ZCARD', known_key) < 100 then
    redis.call('ZADD', known_key, NOW, addr)
  end
  redis.call('PEXPIRE', known_key, known_ttl)
  return {0, 1}
end
-- A fixed window: returns the count (after this hit, if any) and the ms left in the window.
local function count(key, hit)
  local rec = hash(key)
  local n, start = tonumber(rec.n or '0'), tonumber(rec.start or '0')
  if start + window <= NOW then n, start = 0, NOW end
  if hit then
    n = n + 1
    redis.call('HSET', key, 'n', n, 'start', start)
    redis.call('PEXPIRE', key, start + window - NOW)
  end
  return n, start + window - NOW
end
local hit = mode == 'hit'
local seen = tonumber(redis.call('ZSCORE', known_key, addr) or '0')
local known = seen > 0 and seen + known_ttl > NOW
local pair_n, pair_left = count(pair_key, hit)
local all_n, all_left = count(account_key, hit)
local retry = 0
if pair_n >= tonumber(pair_limit) then retry = pair_left end
if not known and all_n >= tonumber(account_limit) and all_left > retry then retry = all_left end
if known then return {retry, 1} end
return {retry, 0}

-- The password throttle of one account, shared by sign-in and the password re-checks of a signed-in
-- user (enable, disable, get-totp-uri, generate-backup-codes). Counting and deciding in one step
-- means parallel wrong passwords cannot slip past a limit between a read and a write.
-- Failures count per (account, client address): a guesser at one address blocks only that pair,
-- never the owner elsewhere. They also count per account over every address: past that limit the
-- account is not locked, the bar is raised: only addresses that signed in to it before (within the
-- known-address lifetime) may still try, so a guesser spread over many addresses is stopped too.
-- KEYS: pair counter, account counter, known addresses (sorted set: address hash -> last sign-in).
-- ARGV: now, mode (peek|hit|known), window ms, pair limit, account limit, address hash, known ttl ms.
-- Returns {ms until allowed or 0, 1 if the address is known else 0}.
local window, addr, known_ttl = tonumber(ARGV[3]), ARGV[6], tonumber(ARGV[7])
if ARGV[2] == 'known' then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', NOW - known_ttl)
  -- At most 100 addresses; a full list keeps the ones it has (each renewed at its next sign-in) and
  -- takes no new one until one expires. Evicting the oldest instead let whoever has the password
  -- alone (2FA on: recorded before the second factor) push the owner's addresses out.
  if redis.call('ZSCORE', KEYS[3], addr) or redis.call('ZCARD', KEYS[3]) < 100 then
    redis.call('ZADD', KEYS[3], NOW, addr)
  end
  redis.call('PEXPIRE', KEYS[3], known_ttl)
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
local hit = ARGV[2] == 'hit'
local seen = tonumber(redis.call('ZSCORE', KEYS[3], addr) or '0')
local known = seen > 0 and seen + known_ttl > NOW
local pair_n, pair_left = count(KEYS[1], hit)
local all_n, all_left = count(KEYS[2], hit)
local retry = 0
if pair_n >= tonumber(ARGV[4]) then retry = pair_left end
if not known and all_n >= tonumber(ARGV[5]) and all_left > retry then retry = all_left end
if known then return {retry, 1} end
return {retry, 0}

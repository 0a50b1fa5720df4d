-- A fixed-window failure counter (sign-in throttling). Counting and deciding in one step means
-- parallel wrong passwords cannot slip past the limit between a read and a write.
-- KEYS: counter hash. ARGV: now, mode (peek|hit), window ms, limit. Returns ms until allowed, or 0.
local rec = hash(KEYS[1])
local window, limit = tonumber(ARGV[3]), tonumber(ARGV[4])
local n, start = tonumber(rec.n or '0'), tonumber(rec.start or '0')
if start + window <= NOW then n, start = 0, NOW end
if ARGV[2] == 'hit' then
  n = n + 1
  redis.call('HSET', KEYS[1], 'n', n, 'start', start)
  redis.call('PEXPIRE', KEYS[1], start + window - NOW)
end
if n >= limit then return start + window - NOW end
return 0

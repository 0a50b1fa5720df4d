-- A fixed-window failure counter (sign-in throttling). Counting and deciding in one step means
-- parallel wrong passwords cannot slip past the limit between a read and a write.
-- Fields: hot_ops.Throttle (counter_key: a hash). Returns ms until allowed, or 0.
local rec = hash(counter_key)
local window = tonumber(window_ms)
local n, start = tonumber(rec.n or '0'), tonumber(rec.start or '0')
if start + window <= NOW then n, start = 0, NOW end
if mode == 'hit' then
  n = n + 1
  redis.call('HSET', counter_key, 'n', n, 'start', start)
  redis.call('PEXPIRE', counter_key, start + window - NOW)
end
if n >= tonumber(limit) then return start + window - NOW end
return 0

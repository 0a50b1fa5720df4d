-- The read-through copy of a user's durable record (SQL) in the hot store, for the pass-through
-- and get-session, which must not touch SQL. Written only while the copy is absent (no 'rec'):
-- a flow that changed the record meanwhile wrote its own fields, which win. Hot fields (locks,
-- attempt counts, pending enrolment) are left as they are. Mode 'repair' (a flow that read the
-- record found the copy disagreeing, after a crash between a record change and its copy's
-- update) overwrites the fields given.
-- 'gen' voids trusted-device records made under another one. A copy filled after a loss (a
-- flush, an eviction) starts at a random generation (ARGV[2]), so that no record of an earlier
-- generation can count again by coincidence of numbers.
-- KEYS: user. ARGV: now, generation if absent, mode (fill|repair), then field/value pairs of the copy.
-- Returns the user hash after the fill (flat).
if ARGV[3] == 'repair' then
  for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
elseif redis.call('HEXISTS', KEYS[1], 'rec') == 0 then
  for i = 4, #ARGV, 2 do redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
  redis.call('HSETNX', KEYS[1], 'gen', ARGV[2])
  redis.call('HSET', KEYS[1], 'rec', '1')
end
return redis.call('HGETALL', KEYS[1])

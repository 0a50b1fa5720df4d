-- The read-through copy of a user's durable record (SQL) in the hot store, for the pass-through
-- and get-session, which must not touch SQL. Written only while the copy is absent (no 'rec'):
-- a flow that changed the record meanwhile wrote its own fields, which win. Hot fields (locks,
-- attempt counts, pending enrolment) are left as they are. Mode 'repair' (a flow that read the
-- record found the copy disagreeing, after a crash between a record change and its copy's
-- update) overwrites the fields given.
-- 'gen' voids trusted-device records made under another one. A copy filled after a loss (a
-- flush, an eviction) starts at a random generation (the generation field), so that no record of
-- an earlier generation can count again by coincidence of numbers.
-- Fields: hot_ops.UserFill (fields: the copy's field/value pairs). Returns the user hash after the
-- fill (flat).
if mode == 'repair' then
  for i = 1, #fields, 2 do redis.call('HSET', user_key, fields[i], fields[i + 1]) end
elseif redis.call('HEXISTS', user_key, 'rec') == 0 then
  for i = 1, #fields, 2 do redis.call('HSETNX', user_key, fields[i], fields[i + 1]) end
  redis.call('HSETNX', user_key, 'gen', generation)
  redis.call('HSET', user_key, 'rec', '1')
end
return redis.call('HGETALL', user_key)

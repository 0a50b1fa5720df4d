-- The read-through copy of a user's durable record (SQL) in the hot store, for the pass-through
-- and get-session, which must not touch SQL (SessionCore.copy_op builds the call).
-- Mode 'fill' writes the copy only while it is absent (no 'rec'); mode 'repair' (a flow that read
-- the record found the copy disagreeing, after a crash between a record change and its copy's
-- update) writes into the copy as it is.
-- Closes "a write from a read of the record older than the copy brings back what a change undid"
-- (R4-7: a fill that read the record before an administrator's reset restored the lock the reset
-- had lifted). Each field comes with what the caller saw of it before it read the record
-- ('seen'), and is written only where the copy's value is not newer than that read:
--   ''          only where the field is absent (a script that wrote it meanwhile wins);
--   '=' .. v    also where it still holds v, the value seen before the read (so older than it);
--   '!'         always (the caller wrote the record itself, just before).
-- No script deletes a copied field (HDEL): each writes its empty value ('lock_until' 0,
-- 'codes_kid' ''), so that a field undone meanwhile is present, not absent, to this script.
-- Hot-only fields (attempt counts, a pending setup) are left as they are.
-- Two writes are more than a field's, because the hot half that failed did more:
--   * 'tfa' from '0' to '1' (the hot half of an enrolment failed, R4-2): what session_answer.lua
--     does on enrolment happens here: every session ends but the one that started the setup
--     ('pending_sid': only it could confirm the factor, and it gave the password to begin), the
--     setup ends, and 'gen' moves on;
--   * a SQL generation newer than the copy's 'sgen' (an import, a revocation or a reset recorded
--     there, whose hot half may have failed: R4-10): 'gen' moves on, so that no device trusted
--     before it skips the second factor.
-- 'gen' voids trusted-device records made under another one. A copy written after a loss (a
-- flush, an eviction) starts at a random generation (the generation field), so that no record of an earlier
-- generation can count again by coincidence of numbers. 'sgen' is the SQL generation the copy
-- has taken in (absent from copies older than the field: they are repaired once).
-- Fields: hot_ops.UserFill (session_prefix_key: the key of the empty session id, the ended
-- sessions' keys are built from it, same hash tag, same slot; generation: a random one, for a copy
-- without 'gen'; fields: triplets field, value, seen). Reply: status, events, the user hash after
-- the write (flat).
local sql_gen = tonumber(sql_generation)
local u = hash(user_key)
local filling = mode == 'fill'
if filling and u.rec then return {'OK', EVENTS, redis.call('HGETALL', user_key)} end

local function enrolled()
  local keep = u.pending_sid
  for _, sid in ipairs(redis.call('SMEMBERS', sessions_key)) do
    if sid ~= keep then
      if redis.call('DEL', session_prefix_key .. sid) == 1 then audit('session.revoked', sid, 'enrolment') end
      redis.call('SREM', sessions_key, sid)
    end
  end
  redis.call('HDEL', user_key, 'pending_secret', 'pending_sid', 'pending_kid', 'pending_name')
  redis.call('DEL', pending_codes_key)
end

local newer = u.sgen == nil or tonumber(u.sgen) < sql_gen
local bump = newer and not filling
for i = 1, #fields, 3 do
  local field, value, seen, held = fields[i], fields[i + 1], fields[i + 2], u[fields[i]]
  if held == nil or seen == '!' or seen == '=' .. held then
    if field == 'tfa' and value == '1' and held == '0' then
      enrolled()
      bump = true
    end
    redis.call('HSET', user_key, field, value)
  end
end
if bump then
  redis.call('HSET', user_key, 'gen', tonumber(u.gen or generation) + 1)
elseif filling and u.gen == nil then
  redis.call('HSET', user_key, 'gen', generation)
end
if newer then redis.call('HSET', user_key, 'sgen', sql_gen) end
if filling then redis.call('HSET', user_key, 'rec', '1') end
return {'OK', EVENTS, redis.call('HGETALL', user_key)}

-- 'generate-backup-codes': the old set is void in the same step the new one exists.
-- A pending setup's codes are replaced only by the session that started it (two_factor_begin.lua).
-- KEYS: user, audit, backup codes, pending backup codes, session. ARGV[6]: session id hash;
-- ARGV[7]: factor change max age ms; ARGV[8]: id of the key the codes are hashed under; ARGV[9..]: hashes.
local u = hash(KEYS[1])
local refused = factor_change_refused(u, KEYS[5], ARGV[7], '1')
if refused then return {refused, EVENTS} end
local target
if u.tfa == '1' then target = KEYS[3] elseif u.pending_secret and u.pending_sid == ARGV[6] then target = KEYS[4] else
  return {'NOT_ENABLED', EVENTS}
end
redis.call('DEL', target)
redis.call('HSET', KEYS[1], 'codes_kid', ARGV[8])
for i = 9, #ARGV do redis.call('SADD', target, ARGV[i]) end
audit('two_factor.backup_codes_regenerated', ARGV[6])
return {'OK', EVENTS}

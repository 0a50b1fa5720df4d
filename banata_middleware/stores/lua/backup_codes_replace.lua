-- 'generate-backup-codes': the old set is void in the same step the new one exists.
-- KEYS: user, audit, backup codes, pending backup codes. ARGV[6]: session id hash; ARGV[7]: id of
-- the key the codes are hashed under; ARGV[8..]: hashes.
local u = hash(KEYS[1])
local target
if u.tfa == '1' then target = KEYS[3] elseif u.pending_secret then target = KEYS[4] else
  return {'NOT_ENABLED', EVENTS}
end
redis.call('DEL', target)
redis.call('HSET', KEYS[1], 'codes_kid', ARGV[7])
for i = 8, #ARGV do redis.call('SADD', target, ARGV[i]) end
audit('two_factor.backup_codes_regenerated', ARGV[6])
return {'OK', EVENTS}

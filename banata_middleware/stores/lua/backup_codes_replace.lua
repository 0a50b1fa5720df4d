-- 'generate-backup-codes' for a pending setup (the confirmed set lives in the record store:
-- ReplaceBackupCodes): the old pending set is void in the same step the new one exists. Only the
-- session that started the setup replaces its codes (two_factor_begin.lua).
-- KEYS: user, audit, pending backup codes, session. ARGV[6]: session id hash;
-- ARGV[7]: factor change max age ms; ARGV[8]: id of the key the codes are hashed under; ARGV[9..]: hashes.
local u = hash(KEYS[1])
local refused = factor_change_refused(u, KEYS[4], ARGV[7], '1')
if refused then return {refused, EVENTS} end
if u.tfa == '1' or not u.pending_secret or u.pending_sid ~= ARGV[6] then return {'NOT_ENABLED', EVENTS} end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[1], 'pending_kid', ARGV[8])
for i = 9, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
audit('two_factor.backup_codes_regenerated', ARGV[6])
return {'OK', EVENTS}

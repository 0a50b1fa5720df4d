-- 'generate-backup-codes' for a pending setup (the confirmed set lives in the record store:
-- ReplaceBackupCodes): the old pending set is void in the same step the new one exists. Only the
-- session that started the setup replaces its codes (two_factor_begin.lua).
-- Fields: hot_ops.BackupCodesReplace.
local u = hash(user_key)
local refused = factor_change_refused(u, session_key, max_age_ms, '1')
if refused then return {refused, EVENTS} end
if u.tfa == '1' or not u.pending_secret or u.pending_sid ~= sid then return {'NOT_ENABLED', EVENTS} end
redis.call('DEL', pending_codes_key)
redis.call('HSET', user_key, 'pending_kid', codes_kid)
for _, code_hash in ipairs(hashes) do redis.call('SADD', pending_codes_key, code_hash) end
audit('two_factor.backup_codes_regenerated', sid)
return {'OK', EVENTS}

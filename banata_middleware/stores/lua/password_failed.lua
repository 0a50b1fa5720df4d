-- Audits a wrong password given to a re-check by a signed-in user (the failure itself is counted by
-- password_gate.lua, in the account's slot, which is not this user's). KEYS: user, audit.
-- ARGV[6]: session id hash.
audit('password.check_failed', ARGV[6])
return {'OK', EVENTS}

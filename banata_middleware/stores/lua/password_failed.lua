-- Audits a wrong password given to a re-check by a signed-in user (the failure itself is counted by
-- password_gate.lua, in the account's slot, which is not this user's). Fields: hot_ops.PasswordFailed.
audit('password.check_failed', sid)
return {'OK', EVENTS}

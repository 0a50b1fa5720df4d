-- A session for a user who passed every factor due. KEYS: user, audit, session, session index.
-- ARGV[6..10]: session id hash, session spec (see new_session), aal, mfa verified at, remember me.
new_session(KEYS[3], KEYS[4], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10])
return {'OK', EVENTS}

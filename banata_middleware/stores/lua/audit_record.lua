-- Records one audit event for a user and changes nothing else: for refusals decided before any
-- state changes (a stored TOTP secret that cannot be decrypted) that must still leave a trace.
-- KEYS: user, audit. ARGV[6]: event type, ARGV[7]: session id hash, ARGV[8]: detail.
audit(ARGV[6], ARGV[7], ARGV[8])
return {'OK', EVENTS}

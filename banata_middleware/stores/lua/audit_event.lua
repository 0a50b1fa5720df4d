-- Records one audit event for a user and changes nothing else: an event such as a secret shown
-- again (get-totp-uri), written before the answer is sent so that a store that cannot record it
-- refuses the request (fail closed), or a refusal decided before any state changes (a stored TOTP
-- secret that cannot be decrypted) that must still leave a trace.
-- KEYS: user, audit. ARGV[6..8]: event type, session id hash, detail (never a secret).
audit(ARGV[6], ARGV[7], ARGV[8])
return {'OK', EVENTS}

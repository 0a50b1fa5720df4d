-- An event that changes no state, such as a secret shown again (get-totp-uri): written before the
-- answer is sent, so a store that cannot record it refuses the request (fail closed).
-- KEYS: user, audit. ARGV[6..8]: event type, session id hash, detail (never a secret).
audit(ARGV[6], ARGV[7], ARGV[8])
return {'OK', EVENTS}

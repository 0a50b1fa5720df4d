-- Records one audit event for a user and changes nothing else: an event such as a secret shown
-- again (get-totp-uri), written before the answer is sent so that a store that cannot record it
-- refuses the request (fail closed), or a refusal decided before any state changes (a stored TOTP
-- secret that cannot be decrypted) that must still leave a trace.
-- Fields: hot_ops.AuditEvent.
audit(event, sid, detail)
return {'OK', EVENTS}

-- The factor-change rule (factor_change_refused) re-checked after a change to a factor committed
-- in the record store (SQL): the caller undoes the change when this refuses. Checks only, writes
-- nothing. Closes "a password-only request in flight commits after enrolment (or after its session
-- ended)": whatever ended the session or turned 2FA on before this check is seen here; whatever
-- comes after it came after the change too.
-- KEYS: user, audit, session. ARGV[6..7]: factor change max age ms, password given ('1'|'0').
-- Reply: OK or the refusal (NO_SESSION | FRESH_TWO_FACTOR | FRESH_PASSWORD), events.
return {factor_change_refused(hash(KEYS[1]), KEYS[3], ARGV[6], ARGV[7]) or 'OK', EVENTS}

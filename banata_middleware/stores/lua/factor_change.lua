-- The factor-change rule (factor_change_refused) re-checked after a change to a factor committed
-- in the record store (SQL): the caller undoes the change when this refuses. Checks only, writes
-- nothing. Closes "a password-only request in flight commits after enrolment (or after its session
-- ended)": whatever ended the session or turned 2FA on before this check is seen here; whatever
-- comes after it came after the change too.
-- Fields: hot_ops.FactorChange.
-- Reply: OK or the refusal (NO_SESSION | FRESH_TWO_FACTOR | FRESH_PASSWORD), events.
return {factor_change_refused(hash(user_key), session_key, max_age_ms, password_given) or 'OK', EVENTS}

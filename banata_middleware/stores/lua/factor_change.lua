-- The factor-change rule (factor_change_refused) re-checked after a change to a factor committed
-- in the record store (SQL): the caller undoes the change when this refuses. Closes "a
-- password-only request in flight commits after enrolment (or after its session ended)":
-- whatever ended the session or turned 2FA on before this check is seen here; whatever comes
-- after it came after the change too. When allowed, the copy's fields that follow the change
-- (fields, field/value pairs: a regeneration's codes_kid) are written in the same step, so the
-- copy never follows a change that is about to be undone.
-- forget_devices '1' (a second factor removed while two-factor stays on: disable-otp of a channel,
-- remove-authenticator of a confirmed app): every trusted device of the user is forgotten too, in
-- this step, only when the change is allowed (a refused change forgets none; an allowed one leaves
-- none trusted). A factor is removed because it was lost or compromised, and which factor trusted
-- a device is not recorded: a browser trusted through the removed one must ask again.
-- Fields: hot_ops.FactorChange (password_given '1'|'0', or 'on': judged as with 2FA on; the record
-- had it when the request was loaded; the copy may say otherwise by now, after a disable racing
-- this change; trust_key: any trust key of the user).
-- Reply: OK or the refusal (NO_SESSION | FRESH_TWO_FACTOR | FRESH_PASSWORD), events.
local copy = hash(user_key)
local u = copy
if password_given == 'on' then u = {tfa = '1', revoked_at = copy.revoked_at} end
local refused = factor_change_refused(u, session_key, max_age_ms, password_given)
if refused then return {refused, EVENTS} end
for i = 1, #fields, 2 do redis.call('HSET', user_key, fields[i], fields[i + 1]) end
-- The caller's session id is its key's last part (Keys.session).
if forget_devices == '1' then forget_all_devices(copy, devices_key, trust_key, key_id(session_key)) end
return {'OK', EVENTS}

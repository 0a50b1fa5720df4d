-- Sign-out: the session and the pending challenge go together. Fields: hot_ops.SessionRevoke
-- (sid: '' when there is no session).
if sid ~= '' and redis.call('DEL', session_key) == 1 then
  redis.call('SREM', sessions_key, sid)
  audit('session.revoked', sid)
end
redis.call('DEL', challenge_key)
return {'OK', EVENTS}

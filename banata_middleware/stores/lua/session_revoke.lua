-- Sign-out: the session and the pending challenge go together. KEYS: user, audit, session,
-- session index, challenge. ARGV[6]: session id hash ('' when there is no session).
if ARGV[6] ~= '' and redis.call('DEL', KEYS[3]) == 1 then
  redis.call('SREM', KEYS[4], ARGV[6])
  audit('session.revoked', ARGV[6])
end
redis.call('DEL', KEYS[5])
return {'OK', EVENTS}

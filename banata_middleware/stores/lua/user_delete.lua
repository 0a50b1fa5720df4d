-- Undo of user_create when the email claim is lost to a concurrent sign-up. KEYS: user, audit.
redis.call('DEL', KEYS[1])
return {'OK', EVENTS}

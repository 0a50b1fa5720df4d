-- A lookup index (email keyed-hash -> user id). 'claim' is SET-if-absent, so two sign-ups with
-- one email cannot both win; 'release' frees a claim only if it is still ours. (Passkeys need no
-- index: the record store's unique credential key decides.)
-- KEYS: index key. ARGV: now, mode (get|claim|release), user id.
local cur = redis.call('GET', KEYS[1])
if ARGV[2] == 'get' then return cur or '' end
if ARGV[2] == 'claim' then
  if cur then return cur end
  redis.call('SET', KEYS[1], ARGV[3])
  return ''
end
if cur == ARGV[3] then redis.call('DEL', KEYS[1]) end
return ''

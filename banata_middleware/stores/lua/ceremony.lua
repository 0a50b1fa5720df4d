-- A WebAuthn ceremony travels in the signed banata.passkey cookie; the store keeps only this mark,
-- written when the ceremony is answered. Set-if-absent in one step: of parallel requests answering
-- one challenge, exactly one finds the mark absent. It lives as long as the ceremony could (PX), plus
-- a margin: PX runs on Redis's clock, the cookie's end on the app's (PasskeyFlows.MARK_MARGIN_MS).
-- KEYS: mark key (the challenge's hash). ARGV: now, 'spend', ms the mark must live.
-- Returns 1 for the first answer, 0 when the challenge was already answered.
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[3]) then return 1 end
return 0

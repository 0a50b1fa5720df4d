-- A WebAuthn ceremony travels in the signed banata.passkey cookie; the store keeps only this mark,
-- written when the ceremony is answered. Set-if-absent in one step: of parallel requests answering
-- one challenge, exactly one finds the mark absent. It lives as long as the ceremony could (PX), plus
-- a margin: PX runs on Redis's clock, the cookie's end on the app's (PasskeyFlows.MARK_MARGIN_MS).
-- Fields: hot_ops.Ceremony (mark_key: the challenge's hash).
-- Returns 1 for the first answer, 0 when the challenge was already answered.
if redis.call('SET', mark_key, '1', 'NX', 'PX', ttl_ms) then return 1 end
return 0

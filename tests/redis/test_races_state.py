"""State races on a real Redis through real servers: two enables at once, and disable racing a
sign-in verification. Odd rounds force every request to read before any commits
(``RecordingRedisStore.race``); even rounds take the server's own schedule."""

from __future__ import annotations

from functools import partial

import pytest
from redis_support import PASSWORD, RACE_ROUNDS, Live, at_once, live_fixture

from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.stores.records import LoadUser

pytestmark = pytest.mark.redis

ROUNDS = RACE_ROUNDS
live = live_fixture()


def test_two_enables_at_once_confirm_only_the_secret_whose_code_was_verified(live: Live) -> None:
    for round_ in range(ROUNDS):
        live.clock.advance(30)
        owner, _, uid = live.user()
        tab = owner.twin()
        live.store.race(2 if round_ % 2 else 0)
        answers = at_once([partial(owner.auth, "/two-factor/enable", {"password": PASSWORD}),
                           partial(tab.auth, "/two-factor/enable", {"password": PASSWORD})])
        live.store.race(0)
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        setups = [(a.json()["totpURI"], a.json()["backupCodes"]) for a in answers]
        confirmed = [uri for uri, _ in setups
                     if owner.auth("/two-factor/verify-totp",
                                   {"code": VirtualAuthenticator.from_uri(uri, clock=live.clock).code()}
                                   ).status_code == 200]
        assert len(confirmed) == 1, round_  # one secret won; the other's code confirms nothing
        live.clock.advance(30)
        now_uri = owner.auth("/two-factor/get-totp-uri", {"password": PASSWORD}).json()["totpURI"]
        assert now_uri == confirmed[0]
        winner_codes = next(codes for uri, codes in setups if uri == confirmed[0])
        loser_codes = next(codes for uri, codes in setups if uri != confirmed[0])
        assert owner.auth("/two-factor/verify-backup-code", {"code": loser_codes[0]}).status_code == 401
        assert owner.auth("/two-factor/verify-backup-code", {"code": winner_codes[0]}).status_code == 200
        assert live.events(uid).count("two_factor.enabled") == 1
        owner.close()
        tab.close()


def test_disable_racing_a_sign_in_verification_never_leaves_half_removed_2fa(live: Live) -> None:
    outcomes = {"verified first": 0, "disabled first": 0}
    for round_ in range(ROUNDS):
        live.clock.advance(30)
        owner, email, uid = live.user()
        owner.enable_2fa()
        live.clock.advance(30)
        pending = live.browser()
        assert pending.sign_in(email).status_code == 403
        code = owner.code()
        live.store.race(2 if round_ % 2 else 0)
        disabled, verified = at_once([partial(owner.auth, "/two-factor/disable", {"password": PASSWORD}),
                                      partial(pending.verify_totp, code)])
        if round_ % 2:  # forced: both read the 2FA state before either committed
            assert len(live.store.loads) >= 2
        live.store.race(0)
        assert disabled.status_code == 200, disabled.text
        events = live.events(uid)
        if verified.status_code == 200:
            # the verification committed first: a legitimate second factor, then 2FA was turned off
            assert events.index("two_factor.verified") < events.index("two_factor.disabled")
            outcomes["verified first"] += 1
        else:
            assert verified.json()["code"] in {"TWO_FACTOR_NOT_ENABLED", "UNAUTHORIZED"}, verified.text
            assert "two_factor.verified" not in events
            assert pending.get("/api/me").status_code in (401, 403)
            outcomes["disabled first"] += 1
        user = live.redis.hgetall(f"banata:{{u:{uid}}}:user")
        assert user.get("tfa") == "0" and "pending_secret" not in user
        record = live.records.execute(LoadUser(uid))
        assert not record.totp and not record.backup_codes
        owner.close()
        pending.close()
    # Which of the two commits first is up to the scheduler (verify usually wins); the invariants
    # above hold every round either way.
    print(f"disable vs verify outcomes over {ROUNDS} rounds: {outcomes}")

"""Races of several authenticator apps per user (issue 15 §2) on a real Redis and PostgreSQL, through
real servers (uvicorn and Werkzeug): two apps added at once, a removal racing a sign-in that
answers with that app's code, the last app removed while a sign-in answers with it, and two
removals at once of a user's two apps. Odd rounds force every request to read before any commits
(``RecordingRedisStore.race``); even rounds take the server's own schedule."""

from __future__ import annotations

from functools import partial
from urllib.parse import parse_qs, urlsplit

from redis_support import PASSWORD, RACE_ROUNDS, Browser, at_once
from test_races_state import Live, live  # noqa: F401  (a fixture)

from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.stores.records import LoadUser

ROUNDS = RACE_ROUNDS  # 10 in CI; BANATA_RACE_ROUNDS or BANATA_TEST_DEPTH=deep for more
TF = "/two-factor"


def _two_apps(live: Live) -> tuple[Browser, str, str, VirtualAuthenticator, str]:  # noqa: F811
    """A user with 2FA on and a second app ("Tablet") confirmed: (owner, email, uid, tablet, its id)."""
    owner, email, uid = live.user()
    owner.enable_2fa()
    r = owner.auth(f"{TF}/enable", {"password": PASSWORD, "name": "Tablet"})
    assert r.status_code == 200, r.text
    tablet = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=live.clock)
    assert owner.verify_totp(tablet.code()).status_code == 200
    return owner, email, uid, tablet, str(r.json()["id"])


def _challenged(live: Live, email: str) -> Browser:  # noqa: F811
    pending = Browser.at(live.base_url, live.clock)
    assert pending.sign_in(email).status_code == 403
    return pending


def test_two_apps_added_at_once_are_both_kept_each_with_its_own_secret(live: Live) -> None:  # noqa: F811
    for round_ in range(ROUNDS):
        live.clock.advance(30)
        owner, _, uid = live.user()
        owner.enable_2fa()
        tab = owner.twin()
        live.store.race(2 if round_ % 2 else 0)
        answers = at_once([partial(owner.auth, f"{TF}/enable", {"password": PASSWORD, "name": "Phone 2"}),
                           partial(tab.auth, f"{TF}/enable", {"password": PASSWORD, "name": "Tablet"})])
        live.store.race(0)
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        uris = [a.json()["totpURI"] for a in answers]
        assert parse_qs(urlsplit(uris[0]).query)["secret"] != parse_qs(urlsplit(uris[1]).query)["secret"]
        for uri in uris:  # each confirms with its own code
            assert owner.verify_totp(VirtualAuthenticator.from_uri(uri, clock=live.clock).code()).status_code == 200
        names = sorted(f.name for f in live.records.execute(LoadUser(uid)).totp if f.confirmed_at is not None)
        assert names == ["Authenticator", "Phone 2", "Tablet"], round_
        owner.close()
        tab.close()


def test_two_unnamed_apps_added_at_once_never_leave_two_of_one_name(live: Live) -> None:  # noqa: F811
    """When both read the user's apps before either commits, both pick the next default name, and
    the later add replaces the earlier, unfinished one (a new QR code) or meets it in the unique
    index: one app is being added, and only its code confirms. Otherwise the later one sees the
    earlier and takes the name after it: two apps, each confirming with its own code. Never two
    apps of one name, never a code that confirms an app no longer there."""
    for round_ in range(ROUNDS):
        live.clock.advance(30)
        owner, _, uid = live.user()
        owner.enable_2fa()
        tab = owner.twin()
        live.store.race(2 if round_ % 2 else 0)
        answers = at_once([partial(owner.auth, f"{TF}/enable", {"password": PASSWORD}),
                           partial(tab.auth, f"{TF}/enable", {"password": PASSWORD})])
        live.store.race(0)
        assert all(a.status_code == 200 or a.json()["code"] == "AUTHENTICATOR_NAME_TAKEN" for a in answers)
        names = {a.json()["name"] for a in answers if a.status_code == 200}
        pending = [f for f in live.records.execute(LoadUser(uid)).totp if f.confirmed_at is None]
        assert sorted(f.name for f in pending) == sorted(names), round_
        confirmed = [a for a in answers if a.status_code == 200 and owner.verify_totp(
            VirtualAuthenticator.from_uri(a.json()["totpURI"], clock=live.clock).code()).status_code == 200]
        assert sorted(a.json()["id"] for a in confirmed) == sorted(f.id for f in pending), round_
        owner.close()
        tab.close()


def test_removing_an_app_racing_a_sign_in_with_its_code(live: Live) -> None:  # noqa: F811
    outcomes = {"verified first": 0, "removed first": 0}
    for round_ in range(ROUNDS):
        live.clock.advance(30)
        owner, email, uid, tablet, tablet_id = _two_apps(live)
        live.clock.advance(30)
        pending = _challenged(live, email)
        live.store.race(2 if round_ % 2 else 0)
        removed, verified = at_once([partial(owner.auth, f"{TF}/remove-authenticator", {"id": tablet_id}),
                                     partial(pending.verify_totp, tablet.code())])
        live.store.race(0)
        assert removed.json() == {"status": True, "twoFactorEnabled": True}, removed.text
        events = live.events(uid)
        if verified.status_code == 200:  # the code was used while the app existed
            assert events.index("two_factor.verified") < events.index("two_factor.authenticator_removed")
            outcomes["verified first"] += 1
        else:
            assert (verified.status_code, verified.json()["code"]) == (401, "INVALID_CODE"), verified.text
            assert "two_factor.verified" not in events
            assert pending.get("/api/me").status_code == 403  # still only the pending challenge
            outcomes["removed first"] += 1
        assert [f.name for f in live.records.execute(LoadUser(uid)).totp] == ["Authenticator"]
        # the remaining app still answers
        live.clock.advance(30)
        assert _challenged(live, email).verify_totp(owner.code()).status_code == 200
        owner.close()
        pending.close()
    print(f"remove vs verify outcomes over {ROUNDS} rounds: {outcomes}")


def test_removing_the_last_app_racing_a_sign_in_with_its_code(live: Live) -> None:  # noqa: F811
    for round_ in range(ROUNDS):
        live.clock.advance(30)
        owner, email, uid = live.user()
        owner.enable_2fa()
        live.clock.advance(30)
        pending = _challenged(live, email)
        live.store.race(2 if round_ % 2 else 0)
        removed, verified = at_once([partial(owner.auth, f"{TF}/remove-authenticator", {"id": "totp"}),
                                     partial(pending.verify_totp, owner.code())])
        live.store.race(0)
        assert removed.json() == {"status": True, "twoFactorEnabled": False}, removed.text
        events = live.events(uid)
        if verified.status_code == 200:
            assert events.index("two_factor.verified") < events.index("two_factor.disabled")
        else:
            assert verified.json()["code"] in {"TWO_FACTOR_NOT_ENABLED", "UNAUTHORIZED"}, verified.text
            assert "two_factor.verified" not in events
        assert live.redis.hget(f"banata:{{u:{uid}}}:user", "tfa") == "0"
        record = live.records.execute(LoadUser(uid))
        assert not record.totp and not record.backup_codes
        owner.close()
        pending.close()


def test_two_removals_at_once_of_a_users_two_apps(live: Live) -> None:  # noqa: F811
    for round_ in range(ROUNDS):
        live.clock.advance(30)
        owner, _, uid, _, tablet_id = _two_apps(live)
        tab = owner.twin()
        live.store.race(2 if round_ % 2 else 0)
        answers = at_once([partial(owner.auth, f"{TF}/remove-authenticator", {"id": "totp"}),
                           partial(tab.auth, f"{TF}/remove-authenticator", {"id": tablet_id})])
        live.store.race(0)
        assert sorted(a.json()["twoFactorEnabled"] for a in answers) == [False, True], [a.text for a in answers]
        assert live.events(uid).count("two_factor.disabled") == 1
        assert live.redis.hget(f"banata:{{u:{uid}}}:user", "tfa") == "0"
        record = live.records.execute(LoadUser(uid))
        assert not record.totp and not record.backup_codes, round_
        owner.close()
        tab.close()

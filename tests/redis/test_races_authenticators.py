"""Races of several authenticator apps per user (issue 15 §2) on a real Redis and PostgreSQL, through
real servers (uvicorn and Werkzeug): two apps added at once, a removal racing a sign-in that
answers with that app's code, the last app removed while a sign-in answers with it, two
removals at once of a user's two apps, codes by message turned off while the last app is
removed, and while two-factor is turned off (one removal of a user's factors in flight at a
time). Odd rounds force every request to read before any commits (``RecordingRedisStore.race``);
even rounds take the server's own schedule."""

from __future__ import annotations

from collections import Counter
from functools import partial
from urllib.parse import parse_qs, urlsplit

import pytest
from redis_support import PASSWORD, RACE_ROUNDS, Browser, Live, at_once, live_fixture
from sqlalchemy import select

from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.stores.records import ListAudit, LoadUser

pytestmark = pytest.mark.redis

ROUNDS = RACE_ROUNDS  # 10 in CI; BANATA_RACE_ROUNDS or BANATA_TEST_DEPTH=deep for more
#: The last-factor race: each order of the two removals should be seen many times.
LAST_FACTOR_ROUNDS = 3 * RACE_ROUNDS
TF = "/two-factor"

live = live_fixture(otp=True)  # codes by message configured (the last-factor race turns them on)


def _two_apps(live: Live) -> tuple[Browser, str, str, VirtualAuthenticator, str]:
    """A user with 2FA on and a second app ("Tablet") confirmed: (owner, email, uid, tablet, its id)."""
    owner, email, uid = live.user()
    owner.enable_2fa()
    r = owner.auth(f"{TF}/enable", {"password": PASSWORD, "name": "Tablet"})
    assert r.status_code == 200, r.text
    tablet = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=live.clock)
    assert owner.verify_totp(tablet.code()).status_code == 200
    return owner, email, uid, tablet, str(r.json()["id"])


def _challenged(live: Live, email: str) -> Browser:
    pending = Browser.at(live.base_url, live.clock)
    assert pending.sign_in(email).status_code == 403
    return pending


def test_two_apps_added_at_once_are_both_kept_each_with_its_own_secret(live: Live) -> None:
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


def test_two_unnamed_apps_added_at_once_never_leave_two_of_one_name(live: Live) -> None:
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


def test_removing_an_app_racing_a_sign_in_with_its_code(live: Live) -> None:
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


def test_removing_the_last_app_racing_a_sign_in_with_its_code(live: Live) -> None:
    for round_ in range(ROUNDS):
        live.clock.advance(30)
        owner, email, uid = live.user()
        owner.enable_2fa()
        live.clock.advance(30)
        pending = _challenged(live, email)
        live.store.race(2 if round_ % 2 else 0)
        removed, verified = at_once([partial(owner.auth, f"{TF}/remove-authenticator",
                                             {"id": "totp", "password": PASSWORD}),
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


def test_two_removals_at_once_of_a_users_two_apps(live: Live) -> None:
    for round_ in range(ROUNDS):
        live.clock.advance(30)
        owner, _, uid, _, tablet_id = _two_apps(live)
        tab = owner.twin()
        live.store.race(2 if round_ % 2 else 0)
        answers = at_once([partial(owner.auth, f"{TF}/remove-authenticator", {"id": "totp", "password": PASSWORD}),
                           partial(tab.auth, f"{TF}/remove-authenticator", {"id": tablet_id, "password": PASSWORD})])
        live.store.race(0)
        assert sorted(a.json()["twoFactorEnabled"] for a in answers) == [False, True], [a.text for a in answers]
        assert live.events(uid).count("two_factor.disabled") == 1
        assert live.redis.hget(f"banata:{{u:{uid}}}:user", "tfa") == "0"
        record = live.records.execute(LoadUser(uid))
        assert not record.totp and not record.backup_codes, round_
        owner.close()
        tab.close()


def test_disable_otp_racing_the_removal_of_the_last_app_never_leaves_2fa_on_without_a_factor(live: Live) -> None:
    """A user with one authenticator app and codes by email turns codes off in one tab while
    removing the app in another. Each removal decides in SQL, under the locks every factor removal
    takes, whether it removes the last factor (``DisableOtp``, ``RemoveAuthenticator``), and takes
    the user's removal lease there. The app removed first: stopping codes then turns two-factor
    off, says so, and is the one audited as such. Codes stopped first: until that request is
    settled (its re-check passed and the lease released) the app's removal answers 409 and
    removes nothing; after, it turns two-factor off. Afterwards, in SQL and in the hot copy,
    two-factor is on exactly when a factor remains, and every answer holds."""
    outcomes: Counter[str] = Counter()
    for round_ in range(LAST_FACTOR_ROUNDS):
        live.clock.advance(30)
        owner, email, uid = live.user()
        owner.enable_2fa()
        live.auth.enable_otp(uid, to=email)  # codes by email beside the app (the app vouches for the address)
        tab = live.twin(owner)
        stop_codes, remove_app = live.race(round_, [
            partial(owner.auth, f"{TF}/disable-otp", {"password": PASSWORD}),
            partial(tab.auth, f"{TF}/remove-authenticator", {"id": "totp", "password": PASSWORD})])
        assert stop_codes.status_code == 200, stop_codes.text
        record = live.records.execute(LoadUser(uid))
        audit = [(e.type, e.detail.get("detail", "")) for e in live.records.execute(ListAudit(uid))]
        assert (not record.otp and ("otp.disabled", "all") in audit) or ("two_factor.disabled", "otp") in audit
        if remove_app.status_code == 409:  # codes stopped first, still in flight: nothing else removed
            assert remove_app.json()["code"] == "TWO_FACTOR_CHANGED", remove_app.text
            assert stop_codes.json()["twoFactorEnabled"] is True
            outcomes["app's removal refused while codes were being stopped"] += 1
            assert [f.id for f in record.totp] == ["totp"] and record.backup_codes and record.two_factor_enabled
            assert live.copy(uid)["tfa"] == "1", round_
            assert not any(kind in ("two_factor.disabled", "two_factor.authenticator_removed") for kind, _ in audit)
            continue
        assert remove_app.status_code == 200, remove_app.text
        said_on = {"disable-otp": stop_codes.json()["twoFactorEnabled"],
                   "remove-authenticator": remove_app.json()["twoFactorEnabled"]}
        # exactly one of them removed the last factor, and said so
        assert sorted(said_on.values()) == [False, True], (round_, said_on)
        assert not record.totp and not record.otp and not record.backup_codes, round_
        assert not record.two_factor_enabled
        assert live.copy(uid)["tfa"] == "0", round_
        disabled = [detail for kind, detail in audit if kind == "two_factor.disabled"]
        if not said_on["disable-otp"]:  # the app went first; stopping codes then ended 2FA
            outcome = "app removed first"
            assert disabled == ["otp"], audit
            assert ("two_factor.authenticator_removed", "totp") in audit
            assert not any(kind == "otp.disabled" for kind, _ in audit), audit
        else:  # codes stopped (and settled) first; removing the app then ended 2FA
            outcome = "codes stopped first"
            assert disabled == ["last_authenticator"], audit
            assert ("otp.disabled", "all") in audit
        assert audit.index(("two_factor.disabled", disabled[0])) > audit.index(
            ("two_factor.enabled", "")), audit
        outcomes[outcome] += 1
        # and the password alone signs in again: no factor is asked for
        assert live.browser().sign_in(email).status_code == 200
    print(f"\ndisable-otp vs remove-authenticator over {LAST_FACTOR_ROUNDS} rounds: {dict(outcomes)}")


def test_disable_racing_disable_otp_one_removal_at_a_time_and_every_answer_holds(live: Live) -> None:
    """R8-2 on real servers and PostgreSQL: a user with an app, backup codes and codes by email
    turns two-factor off in one tab while stopping codes by email in another. One removal of the
    user's factors is in flight at a time (the removal lease, taken in the removal's transaction):
    the other, arriving meanwhile, answers 409 and changes nothing, or, arriving once the first is
    settled, is decided against what the first left (a disable after the codes stopped turns 2FA
    off; codes stopped after a disable find none: 400). Never both refused, never a 503; the lease
    is released every time; the record and the hot copy agree with every answer."""
    outcomes: Counter[str] = Counter()
    for round_ in range(LAST_FACTOR_ROUNDS):
        live.clock.advance(30)
        owner, email, uid = live.user()
        owner.enable_2fa()
        live.auth.enable_otp(uid, to=email)
        tab = live.twin(owner)
        off, stop_codes = live.race(round_, [
            partial(owner.auth, f"{TF}/disable", {"password": PASSWORD}),
            partial(tab.auth, f"{TF}/disable-otp", {"password": PASSWORD, "channel": "email"})])
        answers = (off.status_code, stop_codes.status_code)
        codes = {r.json().get("code") for r in (off, stop_codes) if r.status_code != 200}
        assert 200 in answers and codes <= {"TWO_FACTOR_CHANGED", "OTP_NOT_ENABLED"}, (off.text, stop_codes.text)
        record = live.records.execute(LoadUser(uid))
        events = [e.type for e in live.records.execute(ListAudit(uid))]
        if off.status_code == 200:  # two-factor off: nothing left, whichever came first
            assert (record.totp, record.otp, record.backup_codes) == ((), (), 0), round_
            assert live.copy(uid)["tfa"] == "0", round_
            assert events.count("two_factor.disabled") == 1
            if stop_codes.status_code == 200:
                assert stop_codes.json()["twoFactorEnabled"] is True and "otp.disabled" in events
                outcome = "codes stopped, then 2FA off"
            else:
                assert "otp.disabled" not in events
                outcome = f"2FA off; stopping codes {stop_codes.json()['code']}"
        else:  # the disable met the lease of the codes' removal in flight: it changed nothing
            assert off.json()["code"] == "TWO_FACTOR_CHANGED", off.text
            assert stop_codes.json()["twoFactorEnabled"] is True
            assert [f.id for f in record.totp] == ["totp"] and record.backup_codes and not record.otp
            assert record.two_factor_enabled and live.copy(uid)["tfa"] == "1", round_
            assert "two_factor.disabled" not in events and "otp.disabled" in events
            outcome = "disable refused while codes were being stopped"
        outcomes[outcome] += 1
        t = live.records.schema.user_state
        with live.records.engine.connect() as conn:
            assert conn.execute(select(t.c.removing_until).where(t.c.user_id == uid)).scalar_one() is None
    print(f"\ndisable vs disable-otp over {LAST_FACTOR_ROUNDS} rounds: {dict(outcomes)}")

"""Several named authenticator apps per user (issue 15 §2), on both adapters and both store setups:
``enable`` while two-factor is on adds one (confirmed by ``verify-totp`` with its first code), a
code of any confirmed app is accepted and each app keeps its own replay guard, and the apps are
listed, renamed and removed; removing the last one turns two-factor off and says so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from harness import PASSWORD, Api, Stack

from banata_middleware.flows.authenticators import MAX_AUTHENTICATORS, PENDING_TTL_MS
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.stores.records import ListAudit, LoadUser

EMAIL = "apps@example.com"
TF = "/two-factor"


def with_2fa(stack: Stack) -> tuple[Api, str]:
    api = stack.client()
    uid = api.sign_up(EMAIL).json()["user"]["id"]
    api.enable_2fa()
    return api, uid


def add_app(api: Api, name: str | None = None, **extra: Any) -> tuple[dict[str, Any], VirtualAuthenticator]:
    """``enable`` while 2FA is on: a new app, and the phone app that scanned its QR code."""
    body: dict[str, Any] = {"password": PASSWORD, **extra}
    if name is not None:
        body["name"] = name
    r = api.auth(f"{TF}/enable", body)
    assert r.status_code == 200, r.text
    return r.json(), VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=api.stack.clock)


def confirm(api: Api, device: VirtualAuthenticator) -> Any:
    return api.auth(f"{TF}/verify-totp", {"code": device.code()})


def apps(api: Api) -> list[dict[str, Any]]:
    r = api.get(f"/api/auth{TF}/list-authenticators")
    assert r.status_code == 200, r.text
    return list(r.json())


def challenged(stack: Stack) -> Api:
    api = stack.client()
    r = api.sign_in(EMAIL)
    assert r.status_code == 403, r.text
    return api


def sql_events(stack: Stack, uid: str) -> list[tuple[str, dict[str, str]]]:
    return [(e.type, e.detail) for e in stack.records.execute(ListAudit(uid))]


# -- adding one: better-auth's enable + verify-totp ------------------------------------------------

def test_enable_while_on_adds_an_app_that_counts_only_once_confirmed(stack: Stack) -> None:
    api, uid = with_2fa(stack)
    codes = api.backup_codes
    token = api.http.cookies["banata.session_token"]
    added, tablet = add_app(api, "Tablet")
    # better-auth's enable answer, with no backup codes: the user's stay valid
    assert added["method"] == "totp" and added["backupCodes"] == [] and added["name"] == "Tablet"
    query = parse_qs(urlsplit(added["totpURI"]).query)
    assert query["issuer"] == ["Banata Demo"] and urlsplit(added["totpURI"]).path == f"/Banata%20Demo:{EMAIL}"
    listed = apps(api)
    assert [(a["name"], a["confirmed"]) for a in listed] == [("Authenticator", True), ("Tablet", False)]
    assert listed[1]["id"] == added["id"] and listed[1]["lastUsedAt"] is None
    # not yet a factor: its code does not answer a sign-in
    stack.clock.advance(30)
    r = challenged(stack).auth(f"{TF}/verify-totp", {"code": tablet.code()})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    # its first code in the session confirms it; the session is kept (its own token, no new cookie)
    r = confirm(api, tablet)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] is True and body["token"] == token and body["user"]["twoFactorEnabled"] is True
    assert body["authenticator"]["id"] == added["id"] and body["authenticator"]["confirmed"] is True
    assert "banata.session_token" not in r.headers.get("set-cookie", "")
    assert api.get("/api/auth/get-session").status_code == 200
    assert [(a["name"], a["confirmed"]) for a in apps(api)] == [("Authenticator", True), ("Tablet", True)]
    assert ("two_factor.authenticator_added", {"detail": added["id"]}) in sql_events(stack, uid)
    # the first backup codes still work
    r = challenged(stack).auth(f"{TF}/verify-backup-code", {"code": codes[0]})
    assert r.status_code == 200, r.text


def test_apps_get_default_names_and_names_are_unique_without_regard_to_case(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    second, _ = add_app(api)
    third, _ = add_app(api, "  Phone  ")
    assert (second["name"], third["name"]) == ("Authenticator 2", "Phone")
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": "authenticator"})
    assert (r.status_code, r.json()["code"]) == (409, "AUTHENTICATOR_NAME_TAKEN")
    for bad in ("a\u0007b", "x" * 65, 7):
        r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": bad})
        assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR"), bad
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": "   "})
    assert r.status_code == 200 and r.json()["name"] == "Authenticator 3"  # blank is no name: the default


def test_the_first_setup_takes_a_name_too(stack: Stack) -> None:
    """``enable``'s optional ``name`` names the first app as it names the others; a better-auth
    client sends none and gets "Authenticator"."""
    api = stack.client()
    api.sign_up(EMAIL)
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": " Work phone "})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"method", "totpURI", "backupCodes"}  # a first setup's answer, unchanged
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": "Phone"})  # a new QR code: its name wins
    device = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)
    assert confirm(api, device).status_code == 200
    assert [(a["id"], a["name"], a["confirmed"]) for a in apps(api)] == [("totp", "Phone", True)]
    other = stack.client()
    other.sign_up("other@example.com")
    other.enable_2fa()  # no name
    assert [a["name"] for a in apps(other)] == ["Authenticator"]


@pytest.mark.parametrize("bad", ["a\u0007b", "tab\there", "x" * 65, "evil\u202egnp.exe", "zero\u200bwidth",
                                 "line\u2028break", "private\ue000use", 7, True, ["Phone"], {"n": 1}])
def test_a_bad_name_is_refused_with_400_and_nothing_set_up(stack: Stack, bad: Any) -> None:
    api = stack.client()
    uid = api.sign_up(EMAIL).json()["user"]["id"]
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": bad})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR"), r.text
    assert "name" in r.json()["message"]
    assert stack.records.execute(LoadUser(uid)).totp == ()
    assert api.auth(f"{TF}/get-totp-uri", {"password": PASSWORD}).status_code == 400  # no setup under way
    api.enable_2fa()
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": bad})  # adding one: the same rule
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR"), r.text


def test_names_may_hold_any_script_and_emoji(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    for name in ("Téléphone", "Telefon (Arbeit)", "手机", "Phone \U0001f468\u200d\U0001f4bb"):
        added, _ = add_app(api, name)
        assert added["name"] == name
    # NFC: a name typed decomposed is the same name
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": "Te\u0301le\u0301phone"})
    assert r.status_code == 200 and r.json()["name"] == "Téléphone"


def test_a_new_qr_code_for_an_unfinished_app_of_that_name_replaces_it(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    _, old = add_app(api, "Tablet")
    again, new = add_app(api, "tablet")
    assert [a["id"] for a in apps(api) if not a["confirmed"]] == [again["id"]]
    r = confirm(api, old)
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")  # the replaced secret confirms nothing
    stack.clock.advance(30)
    assert confirm(api, new).status_code == 200


def test_at_most_ten_apps_per_user(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    for i in range(MAX_AUTHENTICATORS - 1):
        add_app(api, f"App {i}")
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": "one too many"})
    assert (r.status_code, r.json()["code"]) == (409, "TOO_MANY_AUTHENTICATORS")
    assert len(apps(api)) == MAX_AUTHENTICATORS


def test_an_unfinished_app_expires_and_goes_at_the_next_add(stack: Stack) -> None:
    api, uid = with_2fa(stack)
    _, stale = add_app(api, "Old tablet")
    stack.clock.advance(PENDING_TTL_MS // 1000 + 1)
    assert [a["name"] for a in apps(api)] == ["Authenticator"]
    r = confirm(api, stale)  # too late: a step-up code of no app, so a wrong code
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    api.auth(f"{TF}/verify-totp", {"code": api.code()})  # a fresh second factor again
    add_app(api, "New tablet")
    names = [f.name for f in stack.records.execute(LoadUser(uid)).totp]
    assert names == ["Authenticator", "New tablet"]


def test_confirming_an_app_needs_a_recent_second_factor(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    _, tablet = add_app(api, "Tablet")
    stack.clock.advance(stack.auth.config.policies.factor_change_max_age + 1)
    r = confirm(api, tablet)
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED")
    assert [a["confirmed"] for a in apps(api)] == [True, False]
    assert api.auth(f"{TF}/verify-totp", {"code": api.code()}).status_code == 200  # step up with the first app
    stack.clock.advance(30)
    assert confirm(api, tablet).status_code == 200


def test_a_challenge_never_confirms_an_app_being_added(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    _, tablet = add_app(api, "Tablet")
    stack.clock.advance(30)
    other = challenged(stack)
    r = other.auth(f"{TF}/verify-totp", {"code": tablet.code()})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    assert [a["confirmed"] for a in apps(api)] == [True, False]


# -- verification: any confirmed app, each with its own replay guard ------------------------------

def test_a_code_of_any_confirmed_app_answers_a_sign_in(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    _, tablet = add_app(api, "Tablet")
    assert confirm(api, tablet).status_code == 200
    for device in (api.device, tablet, api.device):
        assert device is not None
        stack.clock.advance(30)
        r = challenged(stack).auth(f"{TF}/verify-totp", {"code": device.code()})
        assert r.status_code == 200, r.text
    listed = apps(api)
    assert all(a["lastUsedAt"] is not None for a in listed)


def test_the_replay_guard_holds_per_app(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    _, tablet = add_app(api, "Tablet")
    assert confirm(api, tablet).status_code == 200
    stack.clock.advance(30)
    phone_code, tablet_code = api.code(), tablet.code()
    assert phone_code != tablet_code  # each app has its own secret, so its own codes
    assert challenged(stack).auth(f"{TF}/verify-totp", {"code": phone_code}).status_code == 200
    r = challenged(stack).auth(f"{TF}/verify-totp", {"code": phone_code})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")  # accepted once for that app
    # the other app's code of the same time step is its own first use
    assert challenged(stack).auth(f"{TF}/verify-totp", {"code": tablet_code}).status_code == 200
    r = challenged(stack).auth(f"{TF}/verify-totp", {"code": tablet_code})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")


def test_each_app_has_its_own_secret(stack: Stack) -> None:
    api, uid = with_2fa(stack)
    added = [add_app(api, f"App {i}")[0] for i in range(3)]
    secrets_shown = {parse_qs(urlsplit(a["totpURI"]).query)["secret"][0] for a in added}
    first = api.auth(f"{TF}/get-totp-uri", {"password": PASSWORD, "id": "totp"}).json()["totpURI"]
    secrets_shown.add(parse_qs(urlsplit(first).query)["secret"][0])
    assert len(secrets_shown) == 4
    assert len({f.secret for f in stack.records.execute(LoadUser(uid)).totp}) == 4


def test_an_unreadable_app_does_not_stop_the_others(stack: Stack) -> None:
    from sqlalchemy import update

    api, uid = with_2fa(stack)
    _, tablet = add_app(api, "Tablet")
    assert confirm(api, tablet).status_code == 200
    t = stack.records.schema.totp_factors
    with stack.records.engine.begin() as conn:  # the first app's secret corrupted at rest
        conn.execute(update(t).where(t.c.user_id == uid, t.c.id == "totp").values(secret="v1.00000000.AAAA"))
    stack.clock.advance(30)
    assert challenged(stack).auth(f"{TF}/verify-totp", {"code": tablet.code()}).status_code == 200
    r = challenged(stack).auth(f"{TF}/verify-totp", {"code": "000000"})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")  # counted: another app could be read


# -- get-totp-uri -------------------------------------------------------------------------------------

def test_get_totp_uri_shows_the_app_being_added_or_the_one_named(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    first = api.auth(f"{TF}/get-totp-uri", {"password": PASSWORD}).json()["totpURI"]
    added, _ = add_app(api, "Tablet")
    r = api.auth(f"{TF}/get-totp-uri", {"password": PASSWORD})
    assert r.json()["totpURI"] == added["totpURI"]  # what enable just showed
    r = api.auth(f"{TF}/get-totp-uri", {"password": PASSWORD, "id": "totp"})
    assert r.json()["totpURI"] == first
    r = api.auth(f"{TF}/get-totp-uri", {"password": PASSWORD, "id": "nope"})
    assert (r.status_code, r.json()["code"]) == (404, "AUTHENTICATOR_NOT_FOUND")


# -- list, rename, remove -----------------------------------------------------------------------------

def test_the_list_needs_a_session_shows_no_secret_and_is_empty_without_2fa(stack: Stack) -> None:
    r = stack.client().get(f"/api/auth{TF}/list-authenticators")
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")
    api = stack.client()
    api.sign_up(EMAIL)
    assert apps(api) == []
    api.enable_2fa()
    listed = apps(api)
    assert len(listed) == 1 and set(listed[0]) == {"id", "name", "createdAt", "lastUsedAt", "confirmed"}
    assert listed[0]["name"] == "Authenticator" and listed[0]["lastUsedAt"] is not None  # the enrolment's code


def test_rename(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    added, _ = add_app(api, "Tablet")
    r = api.auth(f"{TF}/rename-authenticator", {"id": "totp", "name": " Work phone "})
    assert r.status_code == 200, r.text
    assert r.json()["authenticator"]["name"] == "Work phone" and r.json()["authenticator"]["id"] == "totp"
    r = api.auth(f"{TF}/rename-authenticator", {"id": added["id"], "name": "WORK PHONE"})
    assert (r.status_code, r.json()["code"]) == (409, "AUTHENTICATOR_NAME_TAKEN")
    r = api.auth(f"{TF}/rename-authenticator", {"id": "totp", "name": "work phone"})  # its own name: fine
    assert r.status_code == 200
    r = api.auth(f"{TF}/rename-authenticator", {"id": "nope", "name": "x"})
    assert (r.status_code, r.json()["code"]) == (404, "AUTHENTICATOR_NOT_FOUND")
    r = api.auth(f"{TF}/rename-authenticator", {"id": "totp", "name": "\n"})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR")
    assert [a["name"] for a in apps(api)] == ["work phone", "Tablet"]


@pytest.mark.parametrize("path, body", [("rename-authenticator", {"id": "totp", "name": "x"}),
                                        ("remove-authenticator", {"id": "totp"})])
def test_rename_and_remove_need_a_recent_second_factor(stack: Stack, path: str, body: dict[str, str]) -> None:
    api, _ = with_2fa(stack)
    stack.clock.advance(stack.auth.config.policies.factor_change_max_age + 1)
    r = api.auth(f"{TF}/{path}", body)
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED")
    assert apps(api)[0]["name"] == "Authenticator"
    r = stack.client().auth(f"{TF}/{path}", body)
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")


def test_removing_one_of_two_keeps_2fa_on(stack: Stack) -> None:
    api, uid = with_2fa(stack)
    _, tablet = add_app(api, "Tablet")
    assert confirm(api, tablet).status_code == 200
    r = api.auth(f"{TF}/remove-authenticator", {"id": "totp"})
    assert r.status_code == 200 and r.json() == {"status": True, "twoFactorEnabled": True}, r.text
    assert [a["name"] for a in apps(api)] == ["Tablet"]
    assert ("two_factor.authenticator_removed", {"detail": "totp"}) in sql_events(stack, uid)
    stack.clock.advance(30)
    r = challenged(stack).auth(f"{TF}/verify-totp", {"code": api.code()})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")  # the removed app's code
    assert challenged(stack).auth(f"{TF}/verify-totp", {"code": tablet.code()}).status_code == 200
    r = api.auth(f"{TF}/remove-authenticator", {"id": "totp"})
    assert (r.status_code, r.json()["code"]) == (404, "AUTHENTICATOR_NOT_FOUND")


def test_removing_an_app_being_added_cancels_it(stack: Stack) -> None:
    api, _ = with_2fa(stack)
    added, tablet = add_app(api, "Tablet")
    r = api.auth(f"{TF}/remove-authenticator", {"id": added["id"]})
    assert r.json() == {"status": True, "twoFactorEnabled": True}
    r = confirm(api, tablet)
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")


def test_removing_the_last_app_turns_2fa_off_and_says_so(stack: Stack) -> None:
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)
    api, uid = with_2fa(stack)
    add_app(api, "Tablet")  # being added: it goes too
    r = api.auth(f"{TF}/remove-authenticator", {"id": "totp"})
    assert r.status_code == 200 and r.json() == {"status": True, "twoFactorEnabled": False}, r.text
    assert ("two_factor.disabled", {"detail": "last_authenticator"}) in sql_events(stack, uid)
    assert {"two_factor.authenticator_removed", "two_factor.disabled"} <= {e["type"] for e in events}
    assert api.get("/api/auth/get-session").json()["user"]["twoFactorEnabled"] is False
    record = stack.records.execute(LoadUser(uid))
    assert record.totp == () and record.backup_codes == 0
    assert apps(api) == []
    assert stack.client().sign_in(EMAIL).status_code == 200  # a password alone again
    # and a first setup starts over, with backup codes
    api.enable_2fa()
    assert len(api.backup_codes) == 10 and [a["name"] for a in apps(api)] == ["Authenticator"]


def test_removing_the_last_app_keeps_2fa_on_for_a_user_with_codes_by_message(
        stack_factory: Callable[..., Stack]) -> None:
    """Codes by message are another factor: with them on, the last app goes alone (the backup codes
    stay, sign-in still asks for a second factor), and `twoFactorEnabled` says so."""
    from banata_middleware import OtpConfig
    from banata_middleware.otp import Inbox

    stack = stack_factory(otp=OtpConfig(sender=Inbox()))
    api, uid = with_2fa(stack)
    stack.auth.enable_otp(uid, to=EMAIL)
    r = api.auth(f"{TF}/remove-authenticator", {"id": "totp"})
    assert r.status_code == 200 and r.json() == {"status": True, "twoFactorEnabled": True}, r.text
    record = stack.records.execute(LoadUser(uid))
    assert record.totp == () and record.backup_codes == 10 and record.two_factor_enabled
    assert "two_factor.disabled" not in [t for t, _ in sql_events(stack, uid)]
    r = stack.client().sign_in(EMAIL)
    assert r.status_code == 403 and "otp" in r.json()["twoFactorMethods"]


@pytest.mark.parametrize("ending", ["revoked", "signed-out"])
def test_a_session_that_ends_while_removing_the_last_app_changes_nothing(stack: Stack, ending: str) -> None:
    """The session passed every check when loaded and when re-checked before the removal, then
    ended before the hot store followed the record (two_factor_disable.lua re-checks the rule after
    the commit, as for ``disable``): the removal is put back whole, the app as it was."""
    from test_factor_change import overtaken

    api, uid = with_2fa(stack)
    before = stack.records.execute(LoadUser(uid))
    stale = stack.client()
    stale.http.cookies.update(api.http.cookies)

    def end_it() -> None:
        if ending == "revoked":
            stack.auth.revoke_sessions(uid)
        else:
            assert api.auth("/sign-out").status_code == 200

    status, answer = overtaken(stack, stale, "two_factor_disable", end_it, "POST",
                               f"/api/auth{TF}/remove-authenticator", {"id": "totp"})
    assert (status, answer["code"]) == (401, "UNAUTHORIZED"), answer
    after = stack.records.execute(LoadUser(uid))
    assert after.totp == before.totp and after.backup_codes == before.backup_codes == 10
    stack.clock.advance(30)
    other = challenged(stack)
    assert other.auth(f"{TF}/verify-totp", {"code": api.code()}).status_code == 200
    kinds = [t for t, _ in sql_events(stack, uid)]
    undone = [k for k in kinds if k in ("two_factor.authenticator_removed", "two_factor.disabled",
                                        "two_factor.enabled")]
    assert undone[-3:] == ["two_factor.authenticator_removed", "two_factor.disabled", "two_factor.enabled"], kinds

"""Changing a factor needs an existing factor (issue 12, section 1): a password-only or stale
session cannot read, replace, plant or remove a second factor; enrolment and step-up rotate the
session; an administrator's reset leaves no planted passkey; showing the secret is audited."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from harness import PASSWORD, SITE, Api, PausingStore, Stack

from banata_middleware.simulator import VirtualAuthenticator, VirtualPasskey

PK = "/api/auth/passkey"
EMAIL = "owner@example.com"
WINDOW = 600  # Policies.factor_change_max_age, the default


def cid(key: VirtualPasskey) -> str:
    return base64.urlsafe_b64encode(key.credential_id).rstrip(b"=").decode()


def register(api: Api, key: VirtualPasskey, name: str = "Laptop") -> httpx.Response:
    options = api.get(f"{PK}/generate-register-options")
    if options.status_code != 200:
        return options
    return api.post(f"{PK}/verify-registration", {"response": key.create(options.json(), origin=SITE), "name": name})


def passkey_sign_in(api: Api, key: VirtualPasskey) -> httpx.Response:
    options = api.get(f"{PK}/generate-authenticate-options").json()
    return api.post(f"{PK}/verify-authentication", {"response": key.get(options, origin=SITE)})


def session_cookie(api: Api) -> str:
    return str(api.http.cookies["banata.session_token"])


def stale_password_only_session(stack: Stack) -> tuple[Api, Api]:
    """(owner, browser B): B signed in with the password alone, then the owner, in browser A,
    enabled and confirmed TOTP."""
    owner = stack.client()
    owner.sign_up(EMAIL)
    intruder = stack.client()
    assert intruder.sign_in(EMAIL).status_code == 200
    assert intruder.get("/api/me").json()["aal"] == 1
    owner.enable_2fa()
    return owner, intruder


ATTACKS: dict[str, Any] = {
    "get-totp-uri": lambda api: api.auth("/two-factor/get-totp-uri", {"password": PASSWORD}),
    "generate-backup-codes": lambda api: api.auth("/two-factor/generate-backup-codes", {"password": PASSWORD}),
    "disable": lambda api: api.auth("/two-factor/disable", {"password": PASSWORD}),
    "passkey-register-options": lambda api: api.get(f"{PK}/generate-register-options"),
    "passkey-register": lambda api: register(api, VirtualPasskey()),
}


# -- the attack of the review, as it was reported ----------------------------------------------

@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_password_only_session_cannot_take_over_the_second_factor(stack: Stack, attack: str) -> None:
    owner, intruder = stale_password_only_session(stack)
    r = ATTACKS[attack](intruder)
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED"), r.text
    # the owner's factor is untouched: 2FA on, the enrolment's backup codes still answer a challenge
    api = stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    assert api.auth("/two-factor/verify-backup-code", {"code": owner.backup_codes[0]}).status_code == 200
    assert owner.get(f"{PK}/list-user-passkeys").json() == []


def stepped_down_session(stack: Stack) -> tuple[Api, Api]:
    """(owner, browser B) where B's password-only session survives 2FA being turned on: the host
    imported a secret (no enrolment, so no session is ended); B must step up before changing a factor."""
    owner = stack.client()
    uid = owner.sign_up(EMAIL).json()["user"]["id"]
    intruder = stack.client()
    assert intruder.sign_in(EMAIL).status_code == 200
    uri, codes = stack.auth.import_totp(uid, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", email=EMAIL, backup_codes=True)
    owner.device, owner.backup_codes = VirtualAuthenticator.from_uri(uri, clock=stack.clock), codes
    return owner, intruder


FACTOR_CHANGES: dict[str, Any] = {
    "get-totp-uri": lambda api, key: api.auth("/two-factor/get-totp-uri", {"password": PASSWORD}),
    "generate-backup-codes": lambda api, key: api.auth("/two-factor/generate-backup-codes",
                                                       {"password": PASSWORD}),
    "disable": lambda api, key: api.auth("/two-factor/disable", {"password": PASSWORD}),
    "enable": lambda api, key: api.auth("/two-factor/enable", {"password": PASSWORD}),  # 2FA on: adds an app
    "rename-authenticator": lambda api, key: api.auth("/two-factor/rename-authenticator", {"id": "totp", "name": "x"}),
    "remove-authenticator": lambda api, key: api.auth("/two-factor/remove-authenticator", {"id": "totp"}),
    "generate-register-options": lambda api, key: api.get(f"{PK}/generate-register-options"),
    "delete-passkey": lambda api, key: api.post(f"{PK}/delete-passkey", {"id": cid(key)}),
    "update-passkey": lambda api, key: api.post(f"{PK}/update-passkey", {"id": cid(key), "name": "x"}),
}


@pytest.mark.parametrize("change", list(FACTOR_CHANGES))
def test_an_aal1_session_of_a_user_with_2fa_must_step_up_to_change_a_factor(stack: Stack, change: str) -> None:
    owner, intruder = stepped_down_session(stack)
    owner.sign_in(EMAIL)
    owner.auth("/two-factor/verify-totp", {"code": owner.code()})
    key = VirtualPasskey()
    assert register(owner, key).status_code == 200
    stack.clock.advance(30)
    r = FACTOR_CHANGES[change](intruder, key)
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED"), r.text
    assert "step up" in r.json()["message"]
    assert intruder.auth("/two-factor/verify-totp", {"code": owner.code()}).status_code == 200
    r = FACTOR_CHANGES[change](intruder, key)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("change", list(FACTOR_CHANGES))
def test_factor_changes_need_a_second_factor_fresher_than_the_window(stack: Stack, change: str) -> None:
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    key = VirtualPasskey()
    assert register(owner, key).status_code == 200
    stack.clock.advance(WINDOW + 1)
    r = FACTOR_CHANGES[change](owner, key)
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED"), r.text
    assert owner.auth("/two-factor/verify-totp", {"code": owner.code()}).status_code == 200
    r = FACTOR_CHANGES[change](owner, key)
    assert r.status_code == 200, r.text


def test_verify_registration_checks_freshness_too(stack_factory) -> None:  # type: ignore[no-untyped-def]
    from banata_middleware import Policies

    stack = stack_factory(policies=Policies(factor_change_max_age=60))  # shorter than the ceremony's 300 s
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    options = owner.get(f"{PK}/generate-register-options")
    assert options.status_code == 200
    stack.clock.advance(61)
    response = VirtualPasskey().create(options.json(), origin=SITE)
    r = owner.post(f"{PK}/verify-registration", {"response": response})
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED")
    assert owner.get(f"{PK}/list-user-passkeys").json() == []


def test_the_window_is_configurable(stack_factory) -> None:  # type: ignore[no-untyped-def]
    from banata_middleware import Policies

    stack = stack_factory(policies=Policies(factor_change_max_age=60))
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    stack.clock.advance(59)
    assert owner.auth("/two-factor/get-totp-uri", {"password": PASSWORD}).status_code == 200
    stack.clock.advance(2)
    r = owner.auth("/two-factor/get-totp-uri", {"password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED")


def test_another_session_cannot_read_replace_or_confirm_a_setup_in_progress(stack: Stack) -> None:
    """Browser B (password only) while the owner is between enable and confirmation: reading the
    pending secret would survive the confirmation (B could then answer every challenge)."""
    owner = stack.client()
    owner.sign_up(EMAIL)
    intruder = stack.client()
    assert intruder.sign_in(EMAIL).status_code == 200
    setup = owner.auth("/two-factor/enable", {"password": PASSWORD}).json()
    device = VirtualAuthenticator.from_uri(setup["totpURI"], clock=stack.clock)
    for path in ("/two-factor/get-totp-uri", "/two-factor/generate-backup-codes"):
        r = intruder.auth(path, {"password": PASSWORD})
        assert (r.status_code, r.json()["code"]) == (400, "TWO_FACTOR_NOT_ENABLED"), (path, r.text)
    r = intruder.auth("/two-factor/verify-totp", {"code": device.code()})
    assert (r.status_code, r.json()["code"]) == (400, "TWO_FACTOR_NOT_ENABLED")
    # the owner's own session still sees its setup, and confirms it with the codes it was shown
    assert owner.auth("/two-factor/get-totp-uri", {"password": PASSWORD}).json()["totpURI"] == setup["totpURI"]
    assert owner.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
    api = stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    assert api.auth("/two-factor/verify-backup-code", {"code": setup["backupCodes"][0]}).status_code == 200


# -- enrolment ends the other sessions -----------------------------------------------------------

def test_confirming_enrolment_ends_every_other_session(stack: Stack) -> None:
    owner = stack.client()
    owner.sign_up(EMAIL)
    key = VirtualPasskey()
    assert register(owner, key).status_code == 200
    password_browser, passkey_browser = stack.client(), stack.client()
    assert password_browser.sign_in(EMAIL).status_code == 200
    assert passkey_sign_in(passkey_browser, key).status_code == 200
    assert passkey_browser.get("/api/me").json()["aal"] == 2
    owner.enable_2fa()
    for other in (password_browser, passkey_browser):
        assert other.get("/api/me").status_code == 401
        assert other.get("/api/auth/get-session").json() is None
    assert owner.get("/api/me").json()["aal"] == 2


# -- the session is rotated by enrolment and step-up ---------------------------------------------

def test_enrolment_and_step_up_rotate_the_session_token(stack: Stack) -> None:
    owner = stack.client()
    owner.sign_up(EMAIL)
    before = session_cookie(owner)
    owner.enable_2fa()
    enrolled = session_cookie(owner)
    assert enrolled != before
    stack.clock.advance(30)
    r = owner.auth("/two-factor/verify-totp", {"code": owner.code()})
    assert r.status_code == 200
    stepped = session_cookie(owner)
    assert stepped not in (before, enrolled) and r.json()["token"] == stepped
    assert owner.get("/api/auth/get-session").json()["session"]["aal"] == 2
    for old in (before, enrolled):
        stale = stack.client()
        assert stale.get("/api/me", headers={"authorization": f"Bearer {old}"}).status_code == 401


def test_step_up_keeps_a_session_cookie_without_max_age_when_remember_me_was_off(stack: Stack) -> None:
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    stack.clock.advance(30)
    api = stack.client()
    api.sign_in(EMAIL, rememberMe=False)
    assert api.auth("/two-factor/verify-totp", {"code": owner.code()}).status_code == 200
    stack.clock.advance(30)
    r = api.auth("/two-factor/verify-totp", {"code": owner.code()})
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("banata.session_token="))
    assert "max-age" not in cookie.lower() and "expires" not in cookie.lower()


# -- passkeys for a user without 2FA need a recent password --------------------------------------

def test_passkey_registration_without_2fa_needs_a_recent_password(stack: Stack) -> None:
    api = stack.client()
    api.sign_up(EMAIL)
    stack.clock.advance(WINDOW + 1)
    r = api.get(f"{PK}/generate-register-options")
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_PASSWORD_REQUIRED")
    assert "password" in r.json()["message"]
    assert api.sign_in(EMAIL).status_code == 200  # signing in again is the re-authentication
    assert register(api, VirtualPasskey()).status_code == 200


def test_verify_registration_without_2fa_needs_a_recent_password(stack_factory) -> None:  # type: ignore[no-untyped-def]
    from banata_middleware import Policies

    stack = stack_factory(policies=Policies(factor_change_max_age=60))  # shorter than the ceremony's 300 s
    api = stack.client()
    api.sign_up(EMAIL)
    options = api.get(f"{PK}/generate-register-options").json()
    stack.clock.advance(61)
    r = api.post(f"{PK}/verify-registration", {"response": VirtualPasskey().create(options, origin=SITE)})
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_PASSWORD_REQUIRED")


def test_a_user_verified_passkey_sign_in_counts_as_recent_for_a_user_without_2fa(stack: Stack) -> None:
    owner = stack.client()
    owner.sign_up(EMAIL)
    key = VirtualPasskey()
    assert register(owner, key).status_code == 200
    api = stack.client()
    assert passkey_sign_in(api, key).status_code == 200
    assert register(api, VirtualPasskey()).status_code == 200


# -- an administrator's reset leaves no planted factor -------------------------------------------

def test_reset_2fa_removes_passkeys_and_their_credential_index(stack: Stack) -> None:
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)
    owner = stack.client()
    uid = owner.sign_up(EMAIL).json()["user"]["id"]
    owner.enable_2fa()
    key = VirtualPasskey()
    assert register(owner, key).status_code == 200
    stack.auth.reset_two_factor(uid)
    stack.clock.advance(1)  # a session made in the very millisecond of the reset counts as revoked
    r = passkey_sign_in(stack.client(), key)
    assert (r.status_code, r.json()["code"]) == (401, "PASSKEY_NOT_FOUND")
    api = stack.client()
    assert api.sign_in(EMAIL).status_code == 200
    assert api.get(f"{PK}/list-user-passkeys").json() == []
    assert "passkey.deleted" in [e["type"] for e in events]
    # the credential index was released: the same authenticator can be registered again
    assert register(api, key).status_code == 200


# -- showing the secret is audited --------------------------------------------------------------

def test_get_totp_uri_is_audited_without_the_secret(stack: Stack) -> None:
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    r = owner.auth("/two-factor/get-totp-uri", {"password": PASSWORD})
    secret = r.json()["totpURI"].split("secret=")[1].split("&")[0]
    viewed = [e for e in events if e["type"] == "two_factor.secret_viewed"]
    assert len(viewed) == 1 and viewed[0]["sessionId"]
    assert secret not in repr(events)


# -- the check holds at the moment of the change, not only when the request was loaded -----------



def request_of(api: Api, method: str, path: str, body: Any = None) -> Any:
    from banata_middleware.http import Request

    cookie = "; ".join(f"{name}={value}" for name, value in api.http.cookies.items())
    headers = {"cookie": cookie, "origin": SITE, "content-type": "application/json"}
    return Request(method, path, headers, "127.0.0.1", {}, b"" if body is None else json.dumps(body).encode())


def overtaken(stack: Stack, api: Api, script: str, before: Any, method: str, path: str, body: Any = None) -> Any:
    """``api``'s request, with ``before`` run just ahead of its commit (script ``script``)."""
    from banata_middleware.effects import run_sync

    response = run_sync(stack.auth.gateway.handle(request_of(api, method, path, body)),
                        PausingStore(stack.auth.store, script, before), stack.auth.records)
    return response.status, json.loads(response.body)


@pytest.mark.parametrize("attack", ["generate-backup-codes", "disable", "verify-registration"])
def test_a_password_only_request_overtaken_by_the_enrolment_changes_nothing(stack: Stack, attack: str) -> None:
    """Browser B fires factor changes while the owner confirms 2FA: one that was loaded (and passed
    every check) just before the confirmation must not commit after it."""
    owner = stack.client()
    owner.sign_up(EMAIL)
    intruder = stack.client()
    assert intruder.sign_in(EMAIL).status_code == 200
    setup = owner.auth("/two-factor/enable", {"password": PASSWORD}).json()
    device = VirtualAuthenticator.from_uri(setup["totpURI"], clock=stack.clock)

    def confirm() -> None:
        assert owner.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200

    key = VirtualPasskey()
    if attack == "verify-registration":
        options = intruder.get(f"{PK}/generate-register-options").json()
        body = {"response": key.create(options, origin=SITE)}
        status, answer = overtaken(stack, intruder, "factor_change", confirm, "POST", f"{PK}/verify-registration", body)
    else:
        script = "backup_codes_replace" if attack == "generate-backup-codes" else "two_factor_disable"
        status, answer = overtaken(stack, intruder, script, confirm, "POST", f"/api/auth/two-factor/{attack}",
                                   {"password": PASSWORD})
    assert (status, answer["code"]) == (401, "UNAUTHORIZED"), answer
    api = stack.client()
    assert api.sign_in(EMAIL).status_code == 403  # 2FA still on
    assert api.auth("/two-factor/verify-backup-code", {"code": setup["backupCodes"][0]}).status_code == 200
    assert api.get(f"{PK}/list-user-passkeys").json() == []
    if attack == "verify-registration":  # the refused registration freed its credential id
        options = owner.get(f"{PK}/generate-register-options").json()
        again = key.create(options, origin=SITE, credential_id=key.credential_id)
        assert owner.post(f"{PK}/verify-registration", {"response": again}).status_code == 200


# -- with 2FA on: the rule re-checked after the record store's commit, the change undone if refused --

def _owner_uid(api: Api) -> str:
    return str(api.get("/api/auth/get-session").json()["user"]["id"])


@pytest.mark.parametrize("attack", ["disable", "generate-backup-codes"])
@pytest.mark.parametrize("ending", ["revoked", "signed-out"])
def test_a_session_that_ends_while_its_2fa_change_is_under_way_changes_nothing(
        stack: Stack, attack: str, ending: str) -> None:
    """The session passed every check when loaded (aal 2, fresh), then an administrator revoked
    it, or it was signed out, before the change reached the hot store: the record store's removal
    (or new set of codes) is undone, and the stale session is told so."""
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    uid = _owner_uid(owner)
    stale = stack.client()
    stale.http.cookies.update(owner.http.cookies)
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)

    def end_it() -> None:
        if ending == "revoked":
            stack.auth.revoke_sessions(uid)
        else:
            assert owner.auth("/sign-out").status_code == 200

    script = "two_factor_disable" if attack == "disable" else "factor_change"
    status, answer = overtaken(stack, stale, script, end_it, "POST", f"/api/auth/two-factor/{attack}",
                               {"password": PASSWORD})
    assert (status, answer["code"]) == (401, "UNAUTHORIZED"), answer
    assert "backupCodes" not in answer
    # 2FA is still on, with the same factor and the same backup codes
    stack.clock.advance(30)
    api = stack.client()
    r = api.sign_in(EMAIL)
    assert r.status_code == 403 and "backup_code" in r.json()["twoFactorMethods"], r.text
    assert api.auth("/two-factor/verify-backup-code", {"code": owner.backup_codes[0]}).status_code == 200
    api = stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    assert api.auth("/two-factor/verify-totp", {"code": owner.code()}).status_code == 200
    assert api.get("/api/auth/get-session").json()["user"]["twoFactorEnabled"] is True
    # A disable's removal and its undo are both audited (the undo's row in SQL has the detail
    # 'restored'). A regeneration refused before its set went into use (it was only staged) changed
    # nothing the user holds, so it records nothing and sends no "new backup codes" notice.
    kinds = [e["type"] for e in events]
    if attack == "disable":
        assert (kinds.count("two_factor.disabled"), kinds.count("two_factor.enabled")) == (1, 1), kinds
    else:
        assert kinds.count("two_factor.backup_codes_regenerated") == 0, kinds


def test_a_password_sign_in_while_a_refused_disable_had_the_factor_removed_is_ended(stack: Stack) -> None:
    """Between the record store's removal and the refused re-check, a sign-in reads a record
    without a factor and gets a password-only session: the undo ends it."""
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    stale = stack.client()
    stale.http.cookies.update(owner.http.cookies)
    thief = stack.client(ip="198.51.100.23")
    made: list[int] = []

    def meanwhile() -> None:
        assert owner.auth("/sign-out").status_code == 200  # the disabling session ends...
        made.append(thief.sign_in(EMAIL).status_code)  # ...and a password alone finds no factor

    status, answer = overtaken(stack, stale, "two_factor_disable", meanwhile, "POST", "/api/auth/two-factor/disable",
                               {"password": PASSWORD})
    assert (status, answer["code"]) == (401, "UNAUTHORIZED"), answer
    assert made == [200]
    assert thief.get("/api/me").status_code == 401
    assert thief.get("/api/auth/get-session").json() is None
    assert stack.client().sign_in(EMAIL).status_code == 403

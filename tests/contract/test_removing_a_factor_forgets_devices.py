"""Removing one second factor while two-factor stays on (``disable-otp`` of a channel, with an app
left; ``remove-authenticator`` of one app of two) forgets every trusted device of the user: a factor
is usually removed because it was lost or compromised, and a browser someone got trusted through it
must ask for the second factor again. Which factor trusted a device is not recorded, so all go, as
``revoke-trusted-devices`` and a full ``disable`` do. A removal that is refused changes nothing,
trust included. Every adapter x store (memory + SQLite, Redis + PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from harness import PASSWORD, Api, FailOn, PausingStore, Stack, name_of, request_of

from banata_middleware.effects import run_sync
from banata_middleware.otp import Inbox
from banata_middleware.simulator import VirtualAuthenticator

EMAIL = "forget@example.com"
TF = "/two-factor"


def events(stack: Stack, uid: str) -> list[tuple[str, str]]:
    """The hot store's audit stream of the user: (type, detail)."""
    key = stack.auth.flows.keys.audit(uid)
    if stack.redis is not None:
        with stack.redis.client() as c:
            return [(f["type"], f["detail"]) for _, f in c.xrange(key)]
    return [(e["type"], e["detail"]) for e in stack.auth.store.audit_events(key)]  # type: ignore[attr-defined]


def forgotten_all(stack: Stack, uid: str) -> int:
    return events(stack, uid).count(("trusted_device.revoked", "all"))


def devices(api: Api) -> list[dict[str, object]]:
    r = api.get(f"/api/auth{TF}/list-trusted-devices")
    assert r.status_code == 200, r.text
    return list(r.json())


def sign_in_again(api: Api) -> int:
    api.auth("/sign-out")
    r = api.sign_in(EMAIL)
    assert r.status_code in (200, 403), r.text
    if r.status_code == 403:
        assert r.json()["code"] == "TWO_FACTOR_REQUIRED", r.text
    return r.status_code


# -- codes by email and an app -----------------------------------------------------------------------

def codes_and_an_app(stack: Stack, inbox: Inbox) -> tuple[Api, str, VirtualAuthenticator]:
    """A user with codes by email and one authenticator app, signed in (second factor fresh)."""
    api = stack.client()
    uid = api.sign_up(EMAIL).json()["user"]["id"]
    assert api.auth(f"{TF}/enable", {"password": PASSWORD, "method": "otp"}).status_code == 200
    assert api.auth(f"{TF}/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200
    r = api.auth(f"{TF}/enable", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    app = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)
    assert api.auth(f"{TF}/verify-totp", {"code": app.code()}).status_code == 200
    return api, uid, app


def trusted_by_email(stack: Stack, inbox: Inbox, uid: str) -> Api:
    """Another browser, trusted by a code sent by email (the factor about to be removed)."""
    browser = stack.client()
    assert browser.sign_in(EMAIL).status_code == 403
    assert browser.auth(f"{TF}/send-otp", {}).status_code == 200
    r = browser.auth(f"{TF}/verify-otp", {"code": inbox.latest(user_id=uid).code, "trustDevice": True})
    assert r.status_code == 200 and "banata.trust_device" in browser.http.cookies, r.text
    assert sign_in_again(browser) == 200  # trusted: no second factor asked
    return browser


def test_disable_otp_of_email_forgets_a_device_trusted_by_an_emailed_code(otp_stack: Stack, inbox: Inbox) -> None:
    api, uid, _ = codes_and_an_app(otp_stack, inbox)
    browser = trusted_by_email(otp_stack, inbox, uid)
    assert len(devices(api)) == 1
    r = api.auth(f"{TF}/disable-otp", {"password": PASSWORD, "channel": "email"})
    assert r.status_code == 200 and r.json() == {"status": True, "twoFactorEnabled": True}, r.text
    assert devices(api) == []
    assert forgotten_all(otp_stack, uid) == 1
    assert sign_in_again(browser) == 403
    assert browser.sign_in(EMAIL).json()["twoFactorMethods"] == ["totp"]


def test_a_refused_disable_otp_leaves_the_devices_trusted(otp_stack: Stack, inbox: Inbox) -> None:
    api, uid, _ = codes_and_an_app(otp_stack, inbox)
    browser = trusted_by_email(otp_stack, inbox, uid)
    otp_stack.clock.advance(otp_stack.auth.config.policies.factor_change_max_age + 1)
    r = api.auth(f"{TF}/disable-otp", {"password": PASSWORD, "channel": "email"})
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED"), r.text
    assert forgotten_all(otp_stack, uid) == 0
    assert sign_in_again(browser) == 200


def test_a_disable_otp_refused_or_unchecked_after_its_write_forgets_the_devices_anyway(
        otp_stack: Stack, inbox: Inbox) -> None:
    """The re-check after the record store's removal refuses (the session was signed out in
    flight: 401) or cannot run (503): the address is put back, and its hot step forgot nothing, but
    the removal moved the record's generation on, so the devices are forgotten at the user's next
    read of the record all the same: only access is taken away, never given back (R11-D)."""
    api, uid, _ = codes_and_an_app(otp_stack, inbox)
    browser = trusted_by_email(otp_stack, inbox, uid)
    inner = otp_stack.auth.store
    otp_stack.auth.store = FailOn(inner, "factor_change")
    try:
        r = api.auth(f"{TF}/disable-otp", {"password": PASSWORD, "channel": "email"})
    finally:
        otp_stack.auth.store = inner
    assert (r.status_code, r.json()["code"]) == (503, "STORE_UNAVAILABLE"), r.text
    assert forgotten_all(otp_stack, uid) == 0
    assert sign_in_again(browser) == 403
    browser = trusted_by_email(otp_stack, inbox, uid)
    other_tab = otp_stack.client()
    other_tab.http.cookies.update(api.http.cookies)
    store = PausingStore(inner, "factor_change", lambda: other_tab.auth("/sign-out"))
    response = run_sync(otp_stack.auth.gateway.handle(
        request_of(api, f"{TF}/disable-otp", {"password": PASSWORD, "channel": "email"})),
        store, otp_stack.auth.records)
    assert (response.status, json.loads(response.body)["code"]) == (401, "UNAUTHORIZED"), response.body
    assert forgotten_all(otp_stack, uid) == 0
    assert sign_in_again(browser) == 403
    assert otp_stack.client().sign_in(EMAIL).json()["twoFactorMethods"] == ["totp", "otp"]  # the address is back


# -- two apps ----------------------------------------------------------------------------------------

def two_apps(stack: Stack) -> tuple[Api, str, VirtualAuthenticator]:
    """A user with two confirmed apps ("totp", the first, whose codes ``api.code()`` gives, and
    "Tablet"), signed in (second factor fresh)."""
    api = stack.client()
    uid = api.sign_up(EMAIL).json()["user"]["id"]
    api.enable_2fa()
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": "Tablet"})
    assert r.status_code == 200, r.text
    tablet = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)
    assert api.auth(f"{TF}/verify-totp", {"code": tablet.code()}).status_code == 200
    return api, uid, tablet


def trusted_by_app(stack: Stack, owner: Api) -> Api:
    """Another browser, trusted by a code of the first app (the one about to be removed)."""
    stack.clock.advance(30)
    browser = stack.client()
    assert browser.sign_in(EMAIL).status_code == 403
    r = browser.auth(f"{TF}/verify-totp", {"code": owner.code(), "trustDevice": True})
    assert r.status_code == 200 and "banata.trust_device" in browser.http.cookies, r.text
    assert sign_in_again(browser) == 200
    return browser


def test_removing_one_of_two_apps_forgets_a_device_trusted_by_its_code(stack: Stack) -> None:
    api, uid, _ = two_apps(stack)
    browser = trusted_by_app(stack, api)
    r = api.auth(f"{TF}/remove-authenticator", {"id": "totp"})
    assert r.status_code == 200 and r.json() == {"status": True, "twoFactorEnabled": True}, r.text
    assert devices(api) == []
    assert forgotten_all(stack, uid) == 1
    assert sign_in_again(browser) == 403


@pytest.mark.parametrize("refusal", ["stale", "unknown"])
def test_a_refused_removal_of_an_app_leaves_the_devices_trusted(stack: Stack, refusal: str) -> None:
    api, uid, _ = two_apps(stack)
    browser = trusted_by_app(stack, api)
    if refusal == "stale":
        stack.clock.advance(stack.auth.config.policies.factor_change_max_age + 1)
        r = api.auth(f"{TF}/remove-authenticator", {"id": "totp"})
        assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED"), r.text
    else:
        r = api.auth(f"{TF}/remove-authenticator", {"id": "nope"})
        assert (r.status_code, r.json()["code"]) == (404, "AUTHENTICATOR_NOT_FOUND"), r.text
    assert forgotten_all(stack, uid) == 0
    assert len(devices(browser)) == 1
    assert sign_in_again(browser) == 200


def test_cancelling_an_unfinished_app_leaves_the_devices_trusted(stack: Stack) -> None:
    """An app never confirmed never answered a sign-in, so it trusted no device: removing it (a
    setup cancelled) forgets none."""
    api, uid = stack.client(), ""
    uid = api.sign_up(EMAIL).json()["user"]["id"]
    api.enable_2fa()
    browser = trusted_by_app(stack, api)
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "name": "Tablet"})
    assert r.status_code == 200, r.text
    r = api.auth(f"{TF}/remove-authenticator", {"id": r.json()["id"]})
    assert r.status_code == 200, r.text
    assert forgotten_all(stack, uid) == 0
    assert sign_in_again(browser) == 200


# -- R11: an attacker's review of this change ----------------------------------------------------------

def test_r11_a_replacing_the_email_address_forgets_the_devices_its_codes_trusted(
        otp_stack: Stack, inbox: Inbox) -> None:
    """R11-A: the owner moves the email channel to a new address (enable otp with 'to', verify-otp):
    the old address stops being a factor, a removal by another name; a browser trusted by a code
    sent to it (a mailbox taken over) must ask again. Re-enrolling the same address forgets none."""
    api, uid, _ = codes_and_an_app(otp_stack, inbox)
    browser = trusted_by_email(otp_stack, inbox, uid)
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "method": "otp", "channel": "email", "to": EMAIL})
    assert r.status_code == 200, r.text
    assert api.auth(f"{TF}/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200
    assert forgotten_all(otp_stack, uid) == 0 and sign_in_again(browser) == 200
    r = api.auth(f"{TF}/enable", {"password": PASSWORD, "method": "otp", "channel": "email", "to": "new@example.com"})
    assert r.status_code == 200, r.text
    assert api.auth(f"{TF}/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200
    assert forgotten_all(otp_stack, uid) == 1 and devices(api) == []
    assert sign_in_again(browser) == 403


def test_r11_b_the_last_app_as_read_no_longer_last_at_its_removal(otp_stack: Stack, inbox: Inbox) -> None:
    """R11-B: remove-authenticator reads the app as the last factor (leaving the devices to the
    disable step), while another tab of the owner finishes an email enrolment before the record
    store's removal: two-factor stays on, and the removal's generation forgets the devices."""
    api = otp_stack.client()
    uid = api.sign_up(EMAIL).json()["user"]["id"]
    api.enable_2fa()
    browser = trusted_by_app(otp_stack, api)
    tab = otp_stack.client()
    assert tab.sign_in(EMAIL).status_code == 403
    otp_stack.clock.advance(30)
    assert tab.auth(f"{TF}/verify-totp", {"code": api.code()}).status_code == 200
    assert tab.auth(f"{TF}/enable", {"password": PASSWORD, "method": "otp"}).status_code == 200
    code = inbox.latest(user_id=uid).code
    store = PausingStore(otp_stack.auth.store, "factor_change", lambda: tab.auth(f"{TF}/verify-otp", {"code": code}))
    response = run_sync(otp_stack.auth.gateway.handle(
        request_of(api, f"{TF}/remove-authenticator", {"id": "totp", "password": PASSWORD})),
        store, otp_stack.auth.records)
    assert response.status == 200 and json.loads(response.body)["twoFactorEnabled"] is True, response.body
    assert sign_in_again(browser) == 403


class _AfterStore:
    """The stack's in-process store, running ``after`` once right after the first op of script ``name``."""

    in_process = True

    def __init__(self, store: object, name: str, after: Callable[[], object]) -> None:
        self.store, self.name, self.after = store, name, after

    def execute(self, op: object) -> object:
        reply = self.store.execute(op)  # type: ignore[attr-defined]
        if name_of(op) == self.name and self.after is not None:
            after, self.after = self.after, None  # type: ignore[assignment]
            after()
        return reply


def test_r11_c_a_device_trusted_between_the_forgetting_and_the_removal(stack: Stack) -> None:
    """R11-C: a sign-in answered with the app's code and trustDevice between remove-authenticator's
    hot step (which forgets the devices) and its record store removal is trusted under the new 'gen';
    the removal's generation forgets it at the next read of the record."""
    api, _, _ = two_apps(stack)
    stack.clock.advance(30)
    attacker = stack.client()
    assert attacker.sign_in(EMAIL).status_code == 403
    code = api.code()
    answered: list[int] = []
    store = _AfterStore(stack.auth.store, "factor_change", lambda: answered.append(
        attacker.auth(f"{TF}/verify-totp", {"code": code, "trustDevice": True}).status_code))
    response = run_sync(stack.auth.gateway.handle(request_of(api, f"{TF}/remove-authenticator", {"id": "totp"})),
                        store, stack.auth.records)
    assert response.status == 200 and answered == [200], (response.body, answered)
    assert sign_in_again(attacker) == 403


class _Crash(BaseException):
    """The process dying (not an error any flow catches)."""


class _DyingStore:
    in_process = True

    def __init__(self, store: object, name: str) -> None:
        self.store, self.name = store, name

    def execute(self, op: object) -> object:
        if name_of(op) == self.name:
            raise _Crash()
        return self.store.execute(op)  # type: ignore[attr-defined]


def test_r11_d_a_crash_between_the_removal_and_its_hot_step(otp_stack: Stack, inbox: Inbox) -> None:
    """R11-D: the process dies between disable-otp's record store removal and its hot step: the
    removal stays (documented), and its generation forgets the devices at the next read."""
    api, uid, _ = codes_and_an_app(otp_stack, inbox)
    browser = trusted_by_email(otp_stack, inbox, uid)
    with pytest.raises(_Crash):
        run_sync(otp_stack.auth.gateway.handle(
            request_of(api, f"{TF}/disable-otp", {"password": PASSWORD, "channel": "email"})),
            _DyingStore(otp_stack.auth.store, "factor_change"), otp_stack.auth.records)
    otp_stack.clock.advance(3600)
    # No request in between reads the record: the trusted sign-in below does (it repairs the copy).
    assert otp_stack.client().sign_in(EMAIL).json().get("twoFactorMethods") == ["totp"]  # the address is gone
    assert sign_in_again(browser) == 403


# -- R12: a proof decided before the removal, its trust made after it ----------------------------------

def answered_with_trust_after(stack: Stack, attacker: Api, path: str, body: dict[str, object],
                              owner_meanwhile: Callable[[], None]) -> None:
    """The attacker's answer to its pending sign-in (``trustDevice``), overtaken just before its hot
    step by what the owner does meanwhile; the answer succeeds and its trust cookie is kept."""
    store = PausingStore(stack.auth.store, "challenge_answer", owner_meanwhile)
    response = run_sync(stack.auth.gateway.handle(request_of(attacker, path, {**body, "trustDevice": True})),
                        store, stack.auth.records)
    assert response.status == 200, response.body
    for name, value in response.headers:
        if name.lower() == "set-cookie" and value.startswith("banata.trust_device="):
            attacker.http.cookies.set("banata.trust_device", value.split(";")[0].split("=", 1)[1])


def test_r12_a_totp_proof_decided_before_its_apps_removal_makes_no_trust(stack: Stack) -> None:
    """R12-1: the attacker's verify-totp (password + the app's code, trustDevice) is proved in SQL,
    then the owner removes that app and reads the record (the copy repaired: 'sgen' caught up), then
    the attacker's answer reaches the hot store: the session is made (the code was good when proved,
    as with a removal racing any verify), but no trust, so the browser is asked again next time."""
    api, _, _ = two_apps(stack)
    stack.clock.advance(30)
    attacker = stack.client()
    assert attacker.sign_in(EMAIL).status_code == 403
    code = api.code()

    def owner_removes_then_reads() -> None:
        assert api.auth(f"{TF}/remove-authenticator", {"id": "totp"}).status_code == 200
        assert api.get(f"/api/auth{TF}/list-authenticators").status_code == 200

    answered_with_trust_after(stack, attacker, f"{TF}/verify-totp", {"code": code}, owner_removes_then_reads)
    assert sign_in_again(attacker) == 403


def test_r12_an_emailed_code_read_before_its_address_goes_makes_no_trust(otp_stack: Stack, inbox: Inbox) -> None:
    api, uid, _ = codes_and_an_app(otp_stack, inbox)
    attacker = otp_stack.client()
    assert attacker.sign_in(EMAIL).status_code == 403
    assert attacker.auth(f"{TF}/send-otp", {}).status_code == 200
    code = inbox.latest(user_id=uid).code

    def owner_disables_then_reads() -> None:
        assert api.auth(f"{TF}/disable-otp", {"password": PASSWORD, "channel": "email"}).status_code == 200
        assert api.get(f"/api/auth{TF}/list-authenticators").status_code == 200

    answered_with_trust_after(otp_stack, attacker, f"{TF}/verify-otp", {"code": code}, owner_disables_then_reads)
    assert sign_in_again(attacker) == 403

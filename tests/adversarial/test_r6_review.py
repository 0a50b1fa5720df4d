"""Round-6 review (an attacker's brief): codes by message (send-otp, verify-otp, disable-otp, their
scripts and memory twins), several named authenticator apps (list, rename, remove, adding one with
enable), and the copy's repair after a failed hot half. Each ``xfail(strict=True)`` test
reproduces a finding (R6-n) and fails on this code; the others pin attacks that held. Every test
runs on each adapter x store (memory + SQLite, Redis + PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from harness import PASSWORD, Api, FailOn, PausingStore, Stack, request_of
from sqlalchemy import select

from banata_middleware import OtpConfig
from banata_middleware.delivery import DeliveryPolicy, Outbox
from banata_middleware.effects import run_sync
from banata_middleware.errors import AuthError
from banata_middleware.otp import Inbox
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.stores.records import DisableOtp, ListAudit, LoadUser

EMAIL = "r6@example.com"
THIEF_MAIL = "thief@evil.example"
BASE32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"



@pytest.fixture
def otp_stack(stack_factory: Callable[..., Stack], inbox: Inbox) -> Stack:
    return stack_factory(otp=OtpConfig(sender=inbox, channels=("email", "sms")))


def uid_of(api: Api) -> str:
    return str(api.get("/api/auth/get-session").json()["user"]["id"])


def session_of(api: Api) -> Any:
    return api.get("/api/auth/get-session").json()


def otp_enrolled(stack: Stack, inbox: Inbox, email: str = EMAIL) -> tuple[Api, str]:
    """A user with codes by email on (confirmed), signed in with a fresh aal 2 session; their id."""
    api = stack.client()
    uid = str(api.sign_up(email).json()["user"]["id"])
    r = api.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"})
    assert r.status_code == 200, r.text
    r = api.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code})
    assert r.status_code == 200, r.text
    return api, uid


def otp_rows(stack: Stack, uid: str) -> list[tuple[str, str]]:
    t = stack.records.schema.otp_factors
    with stack.records.engine.connect() as conn:
        return [(r.channel, r.address) for r in conn.execute(select(t.c.channel, t.c.address)
                                                             .where(t.c.user_id == uid))]


# == findings ======================================================================================

# -- R6-1: an enrolment in codes by message begun under "2FA off" finishes after 2FA turned on ------
def test_r6_1_an_enrolment_begun_with_the_password_alone_does_not_finish_once_2fa_is_on(
        otp_stack: Stack, inbox: Inbox) -> None:
    owner = otp_stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    thief = otp_stack.client(ip="198.51.100.7")
    assert thief.sign_in(EMAIL).status_code == 200  # the password leaked; no 2FA yet: an aal 1 session
    r = thief.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "to": THIEF_MAIL})
    assert r.status_code == 200, r.text  # allowed: without 2FA the password is the factor-change rule
    code = inbox.latest(to=THIEF_MAIL).code
    # The app turns 2FA on for the user (a migration's import; enable_otp does the same): the
    # sessions stay, by design. The thief's enrolment was begun under "2FA off" and is still pending.
    otp_stack.auth.import_totp(uid, BASE32)
    assert session_of(thief)["session"]["aal"] == 1
    r = thief.auth("/two-factor/verify-otp", {"code": code})
    # Adding a factor to a user with 2FA on needs a fresh second factor (the factor-change rule, as
    # _confirm_authenticator re-checks it): the thief never gave one.
    assert r.status_code in (400, 403), r.text
    assert otp_rows(otp_stack, uid) == []
    assert session_of(thief)["session"]["aal"] == 1


# -- R6-2: the copy's repair after a failed OTP enrolment spares a thief's pending TOTP setup -------
def test_r6_2_an_otp_enrolment_whose_hot_half_failed_ends_a_thiefs_pending_setup_session(
        otp_stack: Stack, inbox: Inbox) -> None:
    owner = otp_stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    thief = otp_stack.client(ip="198.51.100.8")
    assert thief.sign_in(EMAIL).status_code == 200  # the password leaked: an aal 1 session
    r = thief.auth("/two-factor/enable", {"password": PASSWORD})  # a TOTP setup: its session is 'pending_sid'
    assert r.status_code == 200, r.text
    # The owner turns on codes by email; the hot half of the confirmation fails (Redis times out).
    assert owner.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"}).status_code == 200
    code = inbox.latest(user_id=uid, to=EMAIL).code
    inner = otp_stack.auth.store
    otp_stack.auth.store = FailOn(inner, "session_answer")
    r = owner.auth("/two-factor/verify-otp", {"code": code})
    assert r.status_code == 503, r.text
    otp_stack.auth.store = inner
    assert otp_rows(otp_stack, uid) == [("email", EMAIL)]  # codes by email are on in the record store
    owner.auth("/two-factor/verify-otp", {"code": code})  # the owner retries: the record read repairs the copy
    # The point of an enrolment: no session that did not pass the new factor lives on (R4-2).
    assert session_of(thief) is None
    assert thief.get("/api/me").status_code == 401


# -- R6-1/R6-2, other paths to the same state ------------------------------------------------------
@pytest.mark.parametrize("turn_on", ["import", "enable_otp"])
def test_r6_1_an_enrolment_begun_with_the_password_alone_ends_when_the_app_turns_2fa_on(
        otp_stack: Stack, inbox: Inbox, turn_on: str) -> None:
    owner = otp_stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    thief = otp_stack.client(ip="198.51.100.7")
    assert thief.sign_in(EMAIL).status_code == 200
    r = thief.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "to": THIEF_MAIL})
    assert r.status_code == 200, r.text
    code = inbox.latest(to=THIEF_MAIL).code
    if turn_on == "import":
        otp_stack.auth.import_totp(uid, BASE32)
    else:  # the app vouches for a number it verified itself
        otp_stack.auth.enable_otp(uid, to="+15551234567", channel="sms")
    # The pending enrolment and its code ended with 2FA turning on: the code confirms nothing.
    r = thief.auth("/two-factor/verify-otp", {"code": code})
    assert r.status_code in (400, 401, 403), r.text
    assert ("email", THIEF_MAIL) not in otp_rows(otp_stack, uid)
    assert session_of(thief)["session"]["aal"] == 1


def test_r6_1_2fa_turned_on_between_the_code_and_the_record_write_stops_the_enrolment(
        otp_stack: Stack, inbox: Inbox) -> None:
    from banata_middleware.stores.records import EnableOtp

    owner = otp_stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    thief = otp_stack.client(ip="198.51.100.7")
    assert thief.sign_in(EMAIL).status_code == 200
    r = thief.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "to": THIEF_MAIL})
    assert r.status_code == 200, r.text
    req = request_of(thief, "/two-factor/verify-otp", {"code": inbox.latest(to=THIEF_MAIL).code})
    # The code is used (otp_enrol.lua saw 2FA off), then the app imports a secret before the
    # address reaches the record store: the record store refuses the enrolment (EnableOtp.while_off).
    records = PausingRecords(otp_stack.auth.records, EnableOtp, lambda: otp_stack.auth.import_totp(uid, BASE32))
    response = run_sync(otp_stack.auth.gateway.handle(req), otp_stack.auth.store, records)
    assert response.status == 403, response.body
    assert otp_rows(otp_stack, uid) == []
    assert session_of(thief)["session"]["aal"] == 1


def test_r6_1_a_totp_setup_begun_with_the_password_alone_does_not_finish_once_codes_by_message_are_on(
        otp_stack: Stack, inbox: Inbox) -> None:
    """The other way round: the thief's authenticator setup (2FA off) is confirmed while the app
    turns codes by message on (enable_otp) between the code's check and the record write."""
    from banata_middleware.stores.records import EnableTotp

    owner = otp_stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    thief = otp_stack.client(ip="198.51.100.7")
    assert thief.sign_in(EMAIL).status_code == 200
    r = thief.auth("/two-factor/enable", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    app = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=otp_stack.clock)
    req = request_of(thief, "/two-factor/verify-totp", {"code": app.code()})
    records = PausingRecords(otp_stack.auth.records, EnableTotp,
                             lambda: otp_stack.auth.enable_otp(uid, to="+15551234567", channel="sms"))
    response = run_sync(otp_stack.auth.gateway.handle(req), otp_stack.auth.store, records)
    assert response.status == 409, response.body
    assert stack_totp(otp_stack, uid) == []
    assert session_of(thief)["session"]["aal"] == 1


def stack_totp(stack: Stack, uid: str) -> list[str]:
    return [f.id for f in stack.records.execute(LoadUser(uid)).totp]


def test_r6_2_an_import_whose_hot_half_failed_spares_no_pending_setup_session(otp_stack: Stack) -> None:
    owner = otp_stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    thief = otp_stack.client(ip="198.51.100.8")
    assert thief.sign_in(EMAIL).status_code == 200
    assert thief.auth("/two-factor/enable", {"password": PASSWORD}).status_code == 200  # pending_sid: the thief's
    inner = otp_stack.auth.store
    otp_stack.auth.store = FailOn(inner, "two_factor_import")
    with pytest.raises(AuthError):
        otp_stack.auth.import_totp(uid, BASE32)
    otp_stack.auth.store = inner
    # A request that reads the record repairs the copy: no session confirmed the imported factor,
    # so none is kept (the thief's setup session least of all).
    owner.get("/api/auth/two-factor/list-authenticators")
    assert session_of(thief) is None
    assert thief.get("/api/me").status_code == 401


def test_r6_2_an_enrolment_the_record_store_refused_keeps_no_session_at_the_repair(
        otp_stack: Stack, inbox: Inbox) -> None:
    """The thief's code is used (otp_enrol.lua, the copy still saying 2FA off: the app's
    enable_otp wrote the record, its hot half failed), the record store refuses the address
    (EnableOtp.while_off); the repair that follows keeps no session for an enrolment the record
    does not hold ('enrol_to')."""
    owner = otp_stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    thief = otp_stack.client(ip="198.51.100.8")
    assert thief.sign_in(EMAIL).status_code == 200
    r = thief.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "to": THIEF_MAIL})
    assert r.status_code == 200, r.text
    inner = otp_stack.auth.store

    def turn_on() -> None:
        otp_stack.auth.store = FailOn(inner, "two_factor_import")
        try:
            with pytest.raises(AuthError):
                otp_stack.auth.enable_otp(uid, to="+15551234567", channel="sms")
        finally:
            otp_stack.auth.store = inner

    req = request_of(thief, "/two-factor/verify-otp", {"code": inbox.latest(to=THIEF_MAIL).code})
    response = run_sync(otp_stack.auth.gateway.handle(req), PausingStore(inner, "otp_enrol", turn_on),
                        otp_stack.auth.records)
    assert response.status == 403, response.body
    assert otp_rows(otp_stack, uid) == [("sms", "+15551234567")]
    owner.get("/api/auth/two-factor/list-authenticators")  # a record read repairs the copy
    assert session_of(thief) is None


# -- R6-3: disable-otp ignores two_factor_disable.lua's re-check ---------------------------------
# Fixed (issue 18's crash-safety pass): disable-otp of the last channel is finished like disable
# (Flows.finish_disable: the refusal undoes the removal).
def test_r6_3_disable_otp_by_a_session_revoked_mid_request_changes_nothing(otp_stack: Stack, inbox: Inbox) -> None:
    owner, uid = otp_enrolled(otp_stack, inbox)
    thief = otp_stack.client(ip="198.51.100.9")
    thief.http.cookies.update(owner.http.cookies)  # a stolen fresh session (and the password)
    req = request_of(thief, "/two-factor/disable-otp", {"password": PASSWORD})
    # The owner's administrator ends every session after the request was loaded and checked,
    # before its hot half re-checks the rule (as `disable` does, and undoes the removal on refusal).
    paused = PausingStore(otp_stack.auth.store, "two_factor_disable", lambda: otp_stack.auth.revoke_sessions(uid))
    response = run_sync(otp_stack.auth.gateway.handle(req), paused, otp_stack.auth.records)
    assert response.status == 401, response.body
    assert otp_rows(otp_stack, uid) == [("email", EMAIL)]
    otp_stack.clock.advance(1)
    r = otp_stack.client().sign_in(EMAIL)
    assert (r.status_code, r.json()["code"]) == (403, "TWO_FACTOR_REQUIRED")


class PausingRecords:
    """The stack's record store, running ``before`` once just ahead of the first op of class
    ``kind``: a request loaded and checked, overtaken by another before its SQL change commits."""

    def __init__(self, records: Any, kind: type, before: Callable[[], Any]) -> None:
        self.records, self.kind, self.before = records, kind, before

    def execute(self, op: Any) -> Any:
        if isinstance(op, self.kind) and self.before is not None:
            before, self.before = self.before, None
            before()
        return self.records.execute(op)


# Fixed: the address goes from SQL first, factor_change.lua re-checks the rule after that commit,
# and a refusal (or a hot store that fails) puts it back (RestoreOtp).
def test_r6_3_disable_otp_of_one_channel_by_a_session_revoked_mid_request_changes_nothing(
        otp_stack: Stack, inbox: Inbox) -> None:
    owner, uid = otp_enrolled(otp_stack, inbox)
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "channel": "sms",
                                          "to": "+15551234567"})
    assert r.status_code == 200, r.text
    assert owner.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200
    thief = otp_stack.client(ip="198.51.100.9")
    thief.http.cookies.update(owner.http.cookies)  # a stolen fresh session (and the password)
    req = request_of(thief, "/two-factor/disable-otp", {"password": PASSWORD, "channel": "sms"})
    records = PausingRecords(otp_stack.auth.records, DisableOtp, lambda: otp_stack.auth.revoke_sessions(uid))
    response = run_sync(otp_stack.auth.gateway.handle(req), otp_stack.auth.store, records)
    assert response.status == 401, response.body
    assert sorted(otp_rows(otp_stack, uid)) == [("email", EMAIL), ("sms", "+15551234567")]


def test_r6_3_disable_otp_of_one_channel_with_the_hot_store_down_changes_nothing(
        otp_stack: Stack, inbox: Inbox) -> None:
    """The re-check cannot run (Redis gone after the commit): the address is put back, so that the
    503 means nothing changed, as for the other factor changes."""
    owner, uid = otp_enrolled(otp_stack, inbox)
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "channel": "sms",
                                          "to": "+15551234567"})
    assert r.status_code == 200, r.text
    assert owner.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200
    inner = otp_stack.auth.store
    otp_stack.auth.store = FailOn(inner, "factor_change")
    r = owner.auth("/two-factor/disable-otp", {"password": PASSWORD, "channel": "sms"})
    otp_stack.auth.store = inner
    assert (r.status_code, r.json()["code"]) == (503, "STORE_UNAVAILABLE"), r.text
    assert sorted(otp_rows(otp_stack, uid)) == [("email", EMAIL), ("sms", "+15551234567")]


# -- R6-4: removing the last authenticator app turns 2FA off without the password -----------------
def test_r6_4_removing_the_last_app_needs_what_disable_needs(stack: Stack) -> None:
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    owner.enable_2fa()  # a fresh aal 2 session
    thief = stack.client(ip="198.51.100.10")
    thief.http.cookies.update(owner.http.cookies)  # a stolen session cookie, no password
    r = thief.auth("/two-factor/disable", {"password": "not the password"})
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_PASSWORD")  # disable asks for the password
    r = thief.auth("/two-factor/remove-authenticator", {"id": "totp"})
    assert r.status_code != 200, r.text  # the same change by another name must ask for it too
    assert stack.records.execute(LoadUser(uid)).two_factor_enabled


def test_r6_4_the_last_app_goes_with_the_password_and_not_without(stack: Stack) -> None:
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    owner.enable_2fa()
    r = owner.auth("/two-factor/remove-authenticator", {"id": "totp"})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR") and "password" in r.json()["message"]
    r = owner.auth("/two-factor/remove-authenticator", {"id": "totp", "password": "not the password"})
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_PASSWORD")
    assert stack.records.execute(LoadUser(uid)).two_factor_enabled
    r = owner.auth("/two-factor/remove-authenticator", {"id": "totp", "password": PASSWORD})
    assert r.status_code == 200 and r.json()["twoFactorEnabled"] is False, r.text


def test_r6_4_a_removal_that_became_the_last_meanwhile_needs_the_password_too(stack: Stack) -> None:
    """Two apps: the caller removes one without the password (not the last when loaded); the
    other goes first. The record store decides under its locks: nothing removed, 400."""
    from banata_middleware.stores.records import RemoveAuthenticator

    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    owner.enable_2fa()
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "name": "Tablet"})
    tablet = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)
    tablet_id = r.json()["id"]
    assert owner.auth("/two-factor/verify-totp", {"code": tablet.code()}).status_code == 200
    req = request_of(owner, "/two-factor/remove-authenticator", {"id": "totp"})
    other = request_of(owner, "/two-factor/remove-authenticator", {"id": tablet_id})
    records = PausingRecords(stack.auth.records, RemoveAuthenticator,
                             lambda: run_sync(stack.auth.gateway.handle(other), stack.auth.store, stack.auth.records))
    response = run_sync(stack.auth.gateway.handle(req), stack.auth.store, records)
    assert response.status == 400, response.body
    record = stack.records.execute(LoadUser(uid))
    assert record.two_factor_enabled and [f.id for f in record.totp] == ["totp"]


# -- R6-5: a code sent to an address keeps working after that address is removed -------------------
def test_r6_5_a_code_sent_to_a_removed_address_is_void(otp_stack: Stack, inbox: Inbox) -> None:
    owner, uid = otp_enrolled(otp_stack, inbox)
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "channel": "sms",
                                          "to": "+15551234567"})
    assert r.status_code == 200, r.text
    assert owner.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200
    # The mailbox is taken over; the thief, who has the password, asks for a sign-in code by email.
    thief = otp_stack.client(ip="198.51.100.11")
    assert thief.sign_in(EMAIL).status_code == 403
    assert thief.auth("/two-factor/send-otp", {"channel": "email"}).status_code == 200
    code = inbox.latest(to=EMAIL).code
    # The owner notices and stops codes by email (their session is still fresh from the sms enrolment).
    r = owner.auth("/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"})
    assert r.status_code == 200 and r.json()["twoFactorEnabled"] is True, r.text
    assert otp_rows(otp_stack, uid) == [("sms", "+15551234567")]
    r = thief.auth("/two-factor/verify-otp", {"code": code})
    assert r.status_code == 401, r.text


def test_r6_5_a_code_sent_to_a_replaced_address_is_void(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = otp_enrolled(otp_stack, inbox)
    thief = otp_stack.client(ip="198.51.100.12")
    assert thief.sign_in(EMAIL).status_code == 403
    assert thief.auth("/two-factor/send-otp", {}).status_code == 200
    code = inbox.latest(to=EMAIL).code
    # The app moves the user's codes to the mailbox they verified with it (the old one was lost).
    otp_stack.auth.enable_otp(uid, to="new@example.com")
    r = thief.auth("/two-factor/verify-otp", {"code": code})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE"), r.text
    # A code sent to the new address answers the challenge.
    otp_stack.clock.advance(31)
    assert thief.auth("/two-factor/send-otp", {}).status_code == 200
    r = thief.auth("/two-factor/verify-otp", {"code": inbox.latest(to="new@example.com").code})
    assert r.status_code == 200, r.text


# -- R6-6: binding or removing an address for codes by message notifies nobody ---------------------
# Fixed (branch factors): otp.enabled and otp.disabled are notice kinds.
def test_r6_6_binding_an_address_for_codes_notifies_the_user(stack_factory: Callable[..., Stack],
                                                             mfa_outbox: Outbox, inbox: Inbox) -> None:
    stack = stack_factory(otp=OtpConfig(sender=inbox, channels=("email", "sms")), notifier=mfa_outbox,
                          delivery=DeliveryPolicy(background=False))
    owner = stack.client()
    uid = str(owner.sign_up(EMAIL).json()["user"]["id"])
    owner.enable_2fa()
    stack.auth.deliver_pending()
    assert mfa_outbox.kinds(uid) == ["two_factor.enabled"]
    # Whoever holds a fresh session and the password (or, R6-1, a password-only session) binds a number.
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "channel": "sms",
                                          "to": "+15551234567"})
    assert r.status_code == 200, r.text
    assert owner.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200
    assert otp_rows(stack, uid) == [("sms", "+15551234567")]
    stack.auth.deliver_pending()
    assert len(mfa_outbox.kinds(uid)) == 2, mfa_outbox.kinds(uid)  # a second factor was bound: say so
    r = owner.auth("/two-factor/disable-otp", {"password": PASSWORD})
    assert r.status_code == 200 and r.json()["twoFactorEnabled"] is True
    stack.auth.deliver_pending()
    assert len(mfa_outbox.kinds(uid)) == 3, mfa_outbox.kinds(uid)  # and removed: as authenticator.removed


# -- R6-7: authenticator names take C1 control characters ------------------------------------------
# Fixed (branch factors): names refuse every control and invisible formatting character (Cc, Cf, ...).
@pytest.mark.parametrize("name", ["ph\x85one", "\x9b31mred"])
def test_r6_7_an_authenticator_name_holds_no_control_characters(stack: Stack, name: str) -> None:
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    r = owner.auth("/two-factor/rename-authenticator", {"id": "totp", "name": name})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "VALIDATION_ERROR"


# == attacks that held =============================================================================

def test_held_otp_endpoints_refuse_callers_without_a_challenge_or_session(otp_stack: Stack, inbox: Inbox) -> None:
    otp_enrolled(otp_stack, inbox)
    stranger = otp_stack.client()
    for path, body in (("/two-factor/send-otp", {}), ("/two-factor/verify-otp", {"code": "123456"}),
                       ("/two-factor/disable-otp", {"password": PASSWORD})):
        r = stranger.auth(path, body)
        assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED"), path
    # A forged challenge cookie names nothing.
    stranger.http.cookies.set("banata.two_factor", "forged.value.here")
    assert stranger.auth("/two-factor/send-otp", {}).status_code == 401


def test_held_a_password_only_session_cannot_enrol_or_drop_codes_of_a_user_with_2fa(
        otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = otp_enrolled(otp_stack, inbox)
    stale = otp_stack.client()
    assert stale.sign_in(EMAIL).status_code == 403
    code = (stale.auth("/two-factor/send-otp", {}), inbox.latest(user_id=uid).code)[1]
    assert stale.auth("/two-factor/verify-otp", {"code": code}).status_code == 200  # aal 2 now
    otp_stack.clock.advance(11 * 60)  # past factor_change_max_age: stale
    for path, body in (("/two-factor/enable", {"password": PASSWORD, "method": "otp", "to": THIEF_MAIL}),
                       ("/two-factor/disable-otp", {"password": PASSWORD})):
        r = stale.auth(path, body)
        assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED"), path
    assert otp_rows(otp_stack, uid) == [("email", EMAIL)]


def test_held_a_step_up_code_answers_no_challenge_and_a_sign_in_code_no_step_up(
        otp_stack: Stack, inbox: Inbox) -> None:
    owner, uid = otp_enrolled(otp_stack, inbox)
    otp_stack.clock.advance(60)
    assert owner.auth("/two-factor/send-otp", {}).status_code == 200
    step_up = inbox.latest(user_id=uid).code
    challenge = otp_stack.client()
    assert challenge.sign_in(EMAIL).status_code == 403
    # A step-up code (bound to the owner's session) sent to a sign-in challenge of the same user.
    r = challenge.auth("/two-factor/verify-otp", {"code": step_up})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    otp_stack.clock.advance(31)
    assert challenge.auth("/two-factor/send-otp", {}).status_code == 200
    sign_in = inbox.latest(user_id=uid).code
    r = owner.auth("/two-factor/verify-otp", {"code": sign_in})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    # Another user's challenge with this user's code: the code is bound to the user too.
    other = otp_stack.client()
    other_uid = str(other.sign_up("other@example.com").json()["user"]["id"])
    otp_stack.auth.enable_otp(other_uid, to="other@example.com")
    other2 = otp_stack.client()
    assert other2.sign_in("other@example.com").status_code == 403
    r = other2.auth("/two-factor/verify-otp", {"code": sign_in})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")


def test_held_a_resend_does_not_give_a_challenge_more_attempts(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = otp_enrolled(otp_stack, inbox)
    api = otp_stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    assert api.auth("/two-factor/send-otp", {}).status_code == 200
    code = inbox.latest(user_id=uid).code
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(4):
        assert api.auth("/two-factor/verify-otp", {"code": wrong}).status_code == 401
    otp_stack.clock.advance(31)
    assert api.auth("/two-factor/send-otp", {}).status_code == 200  # a resend
    code = inbox.latest(user_id=uid).code
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    r = api.auth("/two-factor/verify-otp", {"code": wrong})
    assert (r.status_code, r.json()["code"]) == (401, "TOO_MANY_ATTEMPTS")
    # Nor does a resend from a new challenge: the per-user lock counts across challenges.
    for _ in range(5):
        fresh = otp_stack.client()
        assert fresh.sign_in(EMAIL).status_code == 403
        r = fresh.auth("/two-factor/verify-otp", {"code": wrong})
        if r.status_code == 429:
            break
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED")


def test_held_resends_are_throttled_per_user_across_challenges_and_sessions(otp_stack: Stack, inbox: Inbox) -> None:
    owner, uid = otp_enrolled(otp_stack, inbox)
    otp_stack.clock.advance(60)
    a, b = otp_stack.client(), otp_stack.client()
    assert a.sign_in(EMAIL).status_code == 403 and b.sign_in(EMAIL.upper()).status_code == 403
    assert a.auth("/two-factor/send-otp", {}).status_code == 200
    for api in (b, owner):  # another challenge (another spelling of the email), the session
        r = api.auth("/two-factor/send-otp", {})
        assert (r.status_code, r.json()["code"]) == (429, "TOO_MANY_REQUESTS") and r.headers["Retry-After"]
    sent = len(inbox.for_user(uid))
    for _ in range(10):
        otp_stack.clock.advance(31)
        a.auth("/two-factor/send-otp", {})
        b.auth("/two-factor/send-otp", {})
    assert len(inbox.for_user(uid)) - sent <= 4  # 5 an hour: the enrolment's hour still counts it


def test_held_an_unconfirmed_app_answers_no_sign_in_and_steps_up_no_stale_session(stack: Stack) -> None:
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    r = owner.auth("/two-factor/enable", {"password": PASSWORD, "name": "tablet"})
    assert r.status_code == 200, r.text
    tablet = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)
    challenge = stack.client()
    assert challenge.sign_in(EMAIL).status_code == 403
    r = challenge.auth("/two-factor/verify-totp", {"code": tablet.code()})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    stale = stack.client()
    assert stale.sign_in(EMAIL).status_code == 403
    stack.clock.advance(30)  # the owner's enrolment used this step's code
    assert stale.auth("/two-factor/verify-totp", {"code": owner.code()}).status_code == 200
    stack.clock.advance(11 * 60)
    r = stale.auth("/two-factor/verify-totp", {"code": tablet.code()})
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED")
    assert [a["confirmed"] for a in owner.get("/api/auth/two-factor/list-authenticators").json()] == [True, False]


def test_held_apps_of_another_user_cannot_be_renamed_or_removed(stack: Stack) -> None:
    victim = stack.client()
    victim.sign_up(EMAIL)
    victim.enable_2fa()
    r = victim.auth("/two-factor/enable", {"password": PASSWORD, "name": "phone 2"})
    device = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=stack.clock)
    assert victim.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200
    victim_apps = victim.get("/api/auth/two-factor/list-authenticators").json()
    attacker = stack.client()
    attacker.sign_up("attacker@example.com")
    attacker.enable_2fa()
    for app in victim_apps[1:]:  # 'totp', the first app's id, is every user's: the attacker's own too
        r = attacker.auth("/two-factor/rename-authenticator", {"id": app["id"], "name": "pwned"})
        assert (r.status_code, r.json()["code"]) == (404, "AUTHENTICATOR_NOT_FOUND")
        r = attacker.auth("/two-factor/remove-authenticator", {"id": app["id"]})
        assert (r.status_code, r.json()["code"]) == (404, "AUTHENTICATOR_NOT_FOUND")
    assert [a["name"] for a in victim.get("/api/auth/two-factor/list-authenticators").json()] == \
        [a["name"] for a in victim_apps]


BAD_VALUES: list[Any] = [None, 0, 1.5, True, [], {}, ["x"], {"a": 1}, "", " ", "\u0000", "x" * 30_000,
                         "\ud800", "\U0001f600" * 40, "<script>alert(1)</script>", "\u202e", "\x85"]


@pytest.mark.parametrize("path,fields", [
    ("/two-factor/send-otp", ("channel", "trustDevice")),
    ("/two-factor/verify-otp", ("code", "trustDevice")),
    ("/two-factor/disable-otp", ("password", "channel")),
    ("/two-factor/enable", ("method", "channel", "to", "name", "issuer")),
    ("/two-factor/rename-authenticator", ("id", "name")),
    ("/two-factor/remove-authenticator", ("id", "password")),
])
def test_held_no_500_on_malformed_bodies_of_the_new_endpoints(otp_stack: Stack, inbox: Inbox, path: str,
                                                               fields: tuple[str, ...]) -> None:
    owner, _ = otp_enrolled(otp_stack, inbox)
    base: dict[str, Any] = {"password": PASSWORD, "method": "otp", "code": "123456", "id": "totp", "name": "n"}
    for field in fields:
        for value in BAD_VALUES:
            otp_stack.clock.advance(31)  # past the resend interval
            # json.dumps escapes a lone surrogate as \\ud800, as a hostile client may send it.
            r = owner.http.post("/api/auth" + path, content=json.dumps({**base, field: value}),
                                headers={"content-type": "application/json"})
            assert r.status_code < 500, (path, field, repr(value)[:40], r.text[:200])
            if r.status_code >= 400:
                assert r.json()["code"] and r.json()["message"]
    for raw in (b"[]", b"null", b"\"x\"", b"{", b"\xff\xfe"):
        r = owner.http.post("/api/auth" + path, content=raw, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (path, raw, r.text[:200])


def test_held_names_are_served_as_data_and_the_outbox_escapes(stack_factory: Callable[..., Stack]) -> None:
    from banata_middleware.demo import pages

    stack = stack_factory()
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    evil = '<img src=x onerror=alert(1)>'
    r = owner.auth("/two-factor/rename-authenticator", {"id": "totp", "name": evil})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert owner.get("/api/auth/two-factor/list-authenticators").json()[0]["name"] == evil
    assert "innerHTML" not in pages.static_asset("app.js").body.decode()  # type: ignore[union-attr]


def test_held_no_code_in_logs_audit_rows_or_the_audit_stream(otp_stack: Stack, inbox: Inbox,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    _, uid = otp_enrolled(otp_stack, inbox)
    api = otp_stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    assert api.auth("/two-factor/send-otp", {}).status_code == 200
    api.auth("/two-factor/verify-otp", {"code": "12345x"})
    assert api.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code}).status_code == 200
    codes = {m.code for m in inbox.for_user(uid)}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    rows = repr([(e.type, e.detail) for e in otp_stack.records.execute(ListAudit(uid))])
    key = otp_stack.auth.flows.keys.audit(uid)
    if otp_stack.redis is not None:
        with otp_stack.redis.client() as c:
            stream = repr(c.xrange(key))
    else:
        stream = repr(otp_stack.auth.store.data.get(key))
    assert "two_factor.otp_sent" in stream
    for code in codes:
        assert code not in logged and code not in rows and code not in stream


def test_held_a_flush_between_send_and_verify_lets_no_password_alone_through(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = otp_enrolled(otp_stack, inbox)
    api = otp_stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    assert api.auth("/two-factor/send-otp", {}).status_code == 200
    code = inbox.latest(user_id=uid).code
    store = otp_stack.auth.store
    if otp_stack.redis is not None:
        with otp_stack.redis.client() as c:
            c.flushall()
    else:
        with store._lock:
            store.data.clear()
    r = api.auth("/two-factor/verify-otp", {"code": code})
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")
    again = otp_stack.client()
    r = again.sign_in(EMAIL)
    assert (r.status_code, r.json()["code"]) == (403, "TWO_FACTOR_REQUIRED") and r.json()["twoFactorMethods"] == ["otp"]
    assert again.get("/api/me").status_code == 403


# -- R6-7, the other names users give: passkeys, the account --------------------------------------
@pytest.mark.parametrize("name", ["ph\x85one", "\x9b31mred", "evil\u202egpj.exe", "a\u2028b"])
def test_r6_7_passkey_and_account_names_hold_no_control_or_formatting_characters(stack: Stack, name: str) -> None:
    owner = stack.client()
    r = owner.auth("/sign-up/email", {"email": EMAIL, "password": PASSWORD, "name": name})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR"), r.text
    assert owner.sign_up(EMAIL).status_code == 200
    r = owner.auth("/passkey/update-passkey", {"id": "any", "name": name})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR"), r.text
    r = owner.get("/api/auth/passkey/generate-register-options", params={"name": name})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR"), r.text


def test_r6_7_names_keep_emoji_sequences_and_accents(stack: Stack) -> None:
    owner = stack.client()
    name = "Zoë \U0001f469\u200d\U0001f4bb"  # a woman technologist: a zero-width joiner sequence
    r = owner.auth("/sign-up/email", {"email": EMAIL, "password": PASSWORD, "name": name})
    assert r.status_code == 200 and r.json()["user"]["name"] == name, r.text

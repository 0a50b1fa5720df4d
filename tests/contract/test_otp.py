"""One-time codes by message (issue 15 §1): better-auth's send-otp / verify-otp at a pending sign-in
and for step-up, enrolment confirmed by a code sent to the address, the resend throttle, a sender
that fails, and the shared attempt counts and locks. Every adapter x store (memory + SQLite, Redis +
PostgreSQL); the sender is an in-memory ``Inbox``: nothing talks to a mail or SMS provider."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from harness import PASSWORD, SITE, Api, FailOn, PausingStore, Stack
from sqlalchemy import select

from banata_middleware import OtpConfig
from banata_middleware.otp import Inbox, OtpMessage
from banata_middleware.simulator import VirtualAuthenticator

EMAIL = "otp@example.com"


def enrolled(stack: Stack, inbox: Inbox, email: str = EMAIL) -> tuple[Api, str]:
    """A user with codes by email on (confirmed by the code sent there), signed in; their id."""
    api = stack.client()
    uid = api.sign_up(email).json()["user"]["id"]
    r = api.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"})
    assert r.status_code == 200, r.text
    assert r.json() == {"method": "otp", "status": True, "channel": "email", "to": "o***@example.com"}
    message = inbox.latest(user_id=uid)
    assert (message.channel, message.to, message.purpose) == ("email", email, "enrol")
    r = api.auth("/two-factor/verify-otp", {"code": message.code})
    assert r.status_code == 200, r.text
    assert r.json()["status"] is True and r.json()["user"]["twoFactorEnabled"] is True
    return api, uid


def pending(stack: Stack, email: str = EMAIL) -> Api:
    api = stack.client()
    r = api.sign_in(email)
    assert r.status_code == 403, r.text
    assert r.json()["twoFactorMethods"] == ["otp"]
    return api


def sent_code(api: Api, inbox: Inbox, uid: str) -> str:
    r = api.auth("/two-factor/send-otp", {})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": True}
    return inbox.latest(user_id=uid).code


# -- the sign-in flow --------------------------------------------------------------------------

def test_sign_in_with_a_code_sent_by_email(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = enrolled(otp_stack, inbox)
    api = pending(otp_stack)
    code = sent_code(api, inbox, uid)
    message = inbox.latest(user_id=uid)
    assert message.purpose == "sign_in" and message.to == EMAIL and len(code) == 6 and code.isdigit()
    assert code not in repr(message)
    r = api.auth("/two-factor/verify-otp", {"code": code})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"token", "user"} and r.json()["user"]["id"] == uid
    assert "banata.session_token" in api.http.cookies and "banata.two_factor" not in api.http.cookies
    session = api.get("/api/auth/get-session").json()["session"]
    assert session["aal"] == 2 and session["amr"] == ["pwd", "otp"]


def test_a_code_is_accepted_once(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = enrolled(otp_stack, inbox)
    api = pending(otp_stack)
    code = sent_code(api, inbox, uid)
    assert api.auth("/two-factor/verify-otp", {"code": code}).status_code == 200
    again = pending(otp_stack)
    r = again.auth("/two-factor/verify-otp", {"code": code})
    assert (r.status_code, r.json()["code"], r.json()["attemptsRemaining"]) == (401, "INVALID_CODE", 4)


def test_wrong_codes_count_down_the_challenge_attempts(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = enrolled(otp_stack, inbox)
    api = pending(otp_stack)
    code = sent_code(api, inbox, uid)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1):
        r = api.auth("/two-factor/verify-otp", {"code": wrong})
        assert (r.status_code, r.json()["code"], r.json()["attemptsRemaining"]) == (401, "INVALID_CODE", left)
    r = api.auth("/two-factor/verify-otp", {"code": code})  # the challenge counts TOTP and codes alike
    assert r.status_code == 200, r.text


def test_the_fifth_wrong_code_ends_the_challenge(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = enrolled(otp_stack, inbox)
    api = pending(otp_stack)
    code = sent_code(api, inbox, uid)
    for _ in range(4):
        api.auth("/two-factor/verify-otp", {"code": "000000" if code != "000000" else "111111"})
    r = api.auth("/two-factor/verify-otp", {"code": "999999x"})
    assert (r.status_code, r.json()["code"]) == (401, "TOO_MANY_ATTEMPTS")
    r = api.auth("/two-factor/verify-otp", {"code": code})
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")


def test_a_code_is_bound_to_the_challenge_that_asked(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = enrolled(otp_stack, inbox)
    first, second = pending(otp_stack), pending(otp_stack)
    code = sent_code(first, inbox, uid)
    r = second.auth("/two-factor/verify-otp", {"code": code})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    assert first.auth("/two-factor/verify-otp", {"code": code}).status_code == 200


def test_a_code_expires_after_five_minutes(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = enrolled(otp_stack, inbox)
    api = pending(otp_stack)
    code = sent_code(api, inbox, uid)
    assert inbox.latest(user_id=uid).expires_at == otp_stack.clock.now() + 300
    otp_stack.clock.advance(299)
    assert api.auth("/two-factor/verify-otp", {"code": "x"}).status_code == 401  # still pending
    otp_stack.clock.advance(2)
    # The challenge lives 300 s too: a fresh one, with the old code bound to the old challenge.
    api = pending(otp_stack)
    r = api.auth("/two-factor/verify-otp", {"code": code})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")


def test_a_short_lived_code_expires_before_its_challenge(stack_factory: Callable[..., Stack], inbox: Inbox) -> None:
    stack = stack_factory(otp=OtpConfig(sender=inbox, ttl=60))
    _, uid = enrolled(stack, inbox)
    api = pending(stack)
    code = sent_code(api, inbox, uid)
    stack.clock.advance(61)
    r = api.auth("/two-factor/verify-otp", {"code": code})
    assert (r.status_code, r.json()["code"], r.json()["attemptsRemaining"]) == (401, "INVALID_CODE", 4)


def test_a_resend_voids_the_previous_code_and_is_throttled(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = enrolled(otp_stack, inbox)
    api = pending(otp_stack)
    old = sent_code(api, inbox, uid)
    r = api.auth("/two-factor/send-otp", {})
    assert (r.status_code, r.json()["code"], r.headers["retry-after"]) == (429, "TOO_MANY_REQUESTS", "30")
    otp_stack.clock.advance(30)
    new = sent_code(api, inbox, uid)
    if new != old:
        r = api.auth("/two-factor/verify-otp", {"code": old})
        assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    assert api.auth("/two-factor/verify-otp", {"code": new}).status_code == 200


def test_a_code_after_a_used_one_is_no_resend(otp_stack: Stack, inbox: Inbox) -> None:
    """The interval holds back resends of a live code; once it was used (here the enrolment's), the
    next code may follow at once."""
    _, uid = enrolled(otp_stack, inbox)
    api = pending(otp_stack)
    assert api.auth("/two-factor/verify-otp", {"code": sent_code(api, inbox, uid)}).status_code == 200
    r = api.auth("/two-factor/send-otp", {})  # a step-up code, an instant later
    assert r.status_code == 200, r.text


def test_at_most_five_sends_an_hour(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = enrolled(otp_stack, inbox)  # send 1 of the hour
    otp_stack.clock.advance(30)
    api = pending(otp_stack)
    for _ in range(4):
        sent_code(api, inbox, uid)
        otp_stack.clock.advance(30)
    r = api.auth("/two-factor/send-otp", {})
    assert (r.status_code, r.json()["code"]) == (429, "TOO_MANY_REQUESTS")
    assert int(r.headers["retry-after"]) == 3600 - 5 * 30


class FailingSender:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.failing = True

    def __call__(self, message: OtpMessage) -> None:
        if self.failing:
            raise ConnectionError(f"provider down while sending {message.code}")
        self.inbox(message)


def test_a_sender_that_raises_answers_503_and_leaves_the_challenge(
        stack_factory: Callable[..., Stack], inbox: Inbox, caplog: pytest.LogCaptureFixture) -> None:
    sender = FailingSender(inbox)
    stack = stack_factory(otp=OtpConfig(sender=sender))
    sender.failing = False
    _, uid = enrolled(stack, inbox)
    api = pending(stack)
    sender.failing = True
    r = api.auth("/two-factor/send-otp", {})
    assert (r.status_code, r.json()["code"]) == (503, "OTP_DELIVERY_FAILED")
    assert "provider down" not in caplog.text and "ConnectionError" in caplog.text
    sender.failing = False
    code = sent_code(api, inbox, uid)  # not throttled: the failed send was taken back
    r = api.auth("/two-factor/verify-otp", {"code": code})
    assert r.status_code == 200, r.text


def test_an_async_sender_is_awaited(stack_factory: Callable[..., Stack], inbox: Inbox) -> None:
    seen: list[str] = []

    async def send(message: OtpMessage) -> None:
        await asyncio.sleep(0)
        seen.append(message.purpose)
        inbox(message)

    stack = stack_factory(otp=OtpConfig(sender=send))
    _, uid = enrolled(stack, inbox)
    api = pending(stack)
    code = sent_code(api, inbox, uid)
    assert api.auth("/two-factor/verify-otp", {"code": code}).status_code == 200
    assert seen == ["enrol", "sign_in"]


def test_an_async_sender_that_times_out_answers_503(stack_factory: Callable[..., Stack], inbox: Inbox) -> None:
    async def hang(message: OtpMessage) -> None:
        if message.purpose != "enrol":
            await asyncio.sleep(5)
        inbox(message)

    stack = stack_factory(otp=OtpConfig(sender=hang, send_timeout=0.2))
    enrolled(stack, inbox)
    r = pending(stack).auth("/two-factor/send-otp", {})
    assert (r.status_code, r.json()["code"]) == (503, "OTP_DELIVERY_FAILED")


def test_wrong_codes_share_the_challenge_attempts_and_the_user_lock_with_totp(otp_stack: Stack, inbox: Inbox) -> None:
    api = otp_stack.client()
    api.sign_up(EMAIL)
    api.enable_2fa()  # TOTP, then codes by email too
    assert api.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"}).status_code == 200
    assert api.auth("/two-factor/verify-otp", {"code": inbox.latest().code}).status_code == 200
    challenge = otp_stack.client().sign_in(EMAIL).json()
    assert challenge["twoFactorMethods"] == ["totp", "otp", "backup_code"]
    remaining = []
    for _ in range(2):
        b = otp_stack.client()
        assert b.sign_in(EMAIL).status_code == 403
        for path in ("/two-factor/verify-totp", "/two-factor/verify-otp", "/two-factor/verify-totp",
                     "/two-factor/verify-otp"):
            remaining.append(b.auth(path, {"code": "00000a"}).json()["attemptsRemaining"])
    assert remaining == [4, 3, 2, 1] * 2  # one count per challenge, whichever factor
    b = otp_stack.client()
    assert b.sign_in(EMAIL).status_code == 403
    assert b.auth("/two-factor/verify-totp", {"code": "00000a"}).status_code == 401
    r = b.auth("/two-factor/verify-otp", {"code": "00000a"})  # the 10th failure, across factors
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED")
    assert int(r.headers["retry-after"]) == 900
    r = otp_stack.client().sign_in(EMAIL)
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED")


def test_send_otp_needs_a_challenge_or_session_and_codes_on(otp_stack: Stack, inbox: Inbox) -> None:
    r = otp_stack.client().auth("/two-factor/send-otp", {})
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")
    api = otp_stack.client()
    api.sign_up("plain@example.com")
    r = api.auth("/two-factor/send-otp", {})
    assert (r.status_code, r.json()["code"]) == (400, "OTP_NOT_ENABLED")
    r = api.auth("/two-factor/verify-otp", {"code": "123456"})
    assert (r.status_code, r.json()["code"]) == (400, "OTP_NOT_ENABLED")
    api.enable_2fa()  # TOTP only: no code by message at its sign-in
    challenge = otp_stack.client().sign_in("plain@example.com")
    assert challenge.json()["twoFactorMethods"] == ["totp", "backup_code"]


def test_without_otp_config_the_endpoints_are_404(stack: Stack) -> None:
    api = stack.client()
    for path in ("/two-factor/send-otp", "/two-factor/verify-otp", "/two-factor/disable-otp"):
        assert api.auth(path, {"code": "123456"}).status_code == 404


# -- step-up, enrolment, management ----------------------------------------------------------

def test_step_up_with_a_code(otp_stack: Stack, inbox: Inbox) -> None:
    api, uid = enrolled(otp_stack, inbox)
    otp_stack.clock.advance(60)
    before = api.get("/api/auth/get-session").json()["session"]
    code = sent_code(api, inbox, uid)
    assert inbox.latest(user_id=uid).purpose == "step_up"
    r = api.auth("/two-factor/verify-otp", {"code": code})
    assert r.status_code == 200, r.text
    assert r.json()["status"] is True and r.json()["token"]
    after = api.get("/api/auth/get-session").json()["session"]
    assert after["id"] != before["id"] and after["mfaVerifiedAt"] > before["mfaVerifiedAt"]
    r = api.auth("/two-factor/verify-otp", {"code": code})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE") and "attemptsRemaining" not in r.json()


def test_enrolment_needs_the_code_sent_to_the_address(otp_stack: Stack, inbox: Inbox) -> None:
    api = otp_stack.client()
    uid = api.sign_up(EMAIL).json()["user"]["id"]
    r = api.auth("/two-factor/enable", {"password": "wrong password!", "method": "otp"})
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_PASSWORD")
    assert api.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"}).status_code == 200
    r = api.auth("/two-factor/verify-otp", {"code": "00000x"})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    # a typo while confirming is no failure toward the permanent lock (R4-8's rule)
    from banata_middleware.stores.records import LoadUser

    assert otp_stack.records.execute(LoadUser(uid)).failure_streak == 0
    # not on until confirmed: sign-in asks nothing
    assert otp_stack.client().sign_in(EMAIL).status_code == 200
    other = otp_stack.client()
    other.sign_in(EMAIL)
    r = other.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code})  # another session's
    assert (r.status_code, r.json()["code"]) == (400, "OTP_NOT_ENABLED")
    r = api.auth("/two-factor/verify-otp", {"code": inbox.latest(user_id=uid).code})
    assert r.status_code == 200 and r.json()["user"]["twoFactorEnabled"] is True
    # the enrolment ended every other session: none of them passed the new factor
    assert other.get("/api/auth/get-session").json() is None
    row = otp_row(otp_stack, uid)
    assert row == ("email", EMAIL)


def otp_row(stack: Stack, uid: str) -> tuple[str, str] | None:
    t = stack.records.schema.otp_factors
    with stack.records.engine.connect() as conn:
        row = conn.execute(select(t.c.channel, t.c.address).where(t.c.user_id == uid)).first()
    return None if row is None else (row.channel, row.address)


def test_sms_enrolment_needs_a_number_in_international_form(
        stack_factory: Callable[..., Stack], inbox: Inbox) -> None:
    stack = stack_factory(otp=OtpConfig(sender=inbox, channels=("email", "sms")))
    api = stack.client()
    uid = api.sign_up(EMAIL).json()["user"]["id"]
    for body in ({"channel": "sms"}, {"channel": "sms", "to": "555-1234"}, {"channel": "fax", "to": "+15551234567"}):
        r = api.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", **body})
        assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR"), body
    r = api.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp", "channel": "sms",
                                        "to": "+1 (555) 123-4567"})
    assert r.status_code == 200 and r.json()["to"] == "+*******4567"
    message = inbox.latest(user_id=uid)
    assert (message.channel, message.to) == ("sms", "+15551234567")
    assert api.auth("/two-factor/verify-otp", {"code": message.code}).status_code == 200
    assert otp_row(stack, uid) == ("sms", "+15551234567")


def test_an_app_vouches_for_an_address_it_verified(otp_stack: Stack, inbox: Inbox) -> None:
    uid = otp_stack.client().sign_up(EMAIL).json()["user"]["id"]
    otp_stack.auth.enable_otp(uid, to="Verified@Example.com")
    assert otp_row(otp_stack, uid) == ("email", "verified@example.com")
    assert not inbox.messages
    api = pending(otp_stack)
    api.auth("/two-factor/send-otp", {})
    assert inbox.latest(user_id=uid).to == "verified@example.com"


def test_backup_codes_answer_the_challenge_of_a_user_with_codes_by_message(otp_stack: Stack, inbox: Inbox) -> None:
    api, _ = enrolled(otp_stack, inbox)
    r = api.auth("/two-factor/generate-backup-codes", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    codes = r.json()["backupCodes"]
    challenge = otp_stack.client()
    r = challenge.sign_in(EMAIL)
    assert r.json()["twoFactorMethods"] == ["otp", "backup_code"]
    r = challenge.auth("/two-factor/verify-backup-code", {"code": codes[0]})
    assert r.status_code == 200, r.text


def test_disable_otp_turns_2fa_off_when_it_was_the_only_factor(otp_stack: Stack, inbox: Inbox) -> None:
    api, uid = enrolled(otp_stack, inbox)
    r = api.auth("/two-factor/disable-otp", {"password": PASSWORD})
    assert r.status_code == 200 and r.json() == {"status": True, "twoFactorEnabled": False}
    assert otp_row(otp_stack, uid) is None
    assert api.get("/api/auth/get-session").json()["user"]["twoFactorEnabled"] is False
    assert otp_stack.client().sign_in(EMAIL).status_code == 200
    r = api.auth("/two-factor/disable-otp", {"password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (400, "OTP_NOT_ENABLED")



def test_disable_otp_of_the_last_factor_whose_hot_half_fails_changes_nothing(otp_stack: Stack, inbox: Inbox) -> None:
    """As ``disable``: the record store removes the address and codes first; when the hot store
    then fails, so that the factor-change rule cannot be re-checked, they are put back before the
    503, which therefore means nothing changed (docs/storage.md, "Writes that span SQL and Redis")."""
    api, uid = enrolled(otp_stack, inbox)
    inner = otp_stack.auth.store
    otp_stack.auth.store = FailOn(inner, "two_factor_disable")
    try:
        r = api.auth("/two-factor/disable-otp", {"password": PASSWORD})
    finally:
        otp_stack.auth.store = inner
    assert (r.status_code, r.json()["code"]) == (503, "STORE_UNAVAILABLE"), r.text
    assert otp_row(otp_stack, uid) == ("email", EMAIL)
    challenge = pending(otp_stack)  # a second factor is still due: codes by message
    assert challenge.auth("/two-factor/verify-otp", {"code": sent_code(challenge, inbox, uid)}).status_code == 200


def test_disable_otp_by_a_session_that_ends_while_it_is_under_way_changes_nothing(
        otp_stack: Stack, inbox: Inbox) -> None:
    """The factor-change rule is re-checked after the record store's removal, as for ``disable``:
    a session signed out meanwhile is refused (it used to get 200, the removal kept) and the
    address is put back."""
    import json

    from banata_middleware.effects import run_sync
    from banata_middleware.http import Request

    api, uid = enrolled(otp_stack, inbox)
    other_tab = otp_stack.client()
    other_tab.http.cookies.update(api.http.cookies)
    cookie = "; ".join(f"{name}={value}" for name, value in api.http.cookies.items())
    req = Request("POST", "/api/auth/two-factor/disable-otp",
                  {"cookie": cookie, "origin": SITE, "content-type": "application/json"}, "127.0.0.1", {},
                  json.dumps({"password": PASSWORD}).encode())
    store = PausingStore(otp_stack.auth.store, "two_factor_disable", lambda: other_tab.auth("/sign-out"))
    response = run_sync(otp_stack.auth.gateway.handle(req), store, otp_stack.auth.records)
    assert (response.status, json.loads(response.body)["code"]) == (401, "UNAUTHORIZED"), response.body
    assert otp_row(otp_stack, uid) == ("email", EMAIL)
    r = otp_stack.client().sign_in(EMAIL)
    assert r.status_code == 403 and r.json()["twoFactorMethods"] == ["otp"], r.text


def test_disable_otp_of_one_channel_is_undone_when_the_re_check_refuses_or_cannot_run(
        stack_factory: Callable[..., Stack], inbox: Inbox) -> None:
    """With another factor left (here: codes by SMS), stopping one channel is written to SQL first;
    factor_change.lua then re-checks the rule (as for ``disable``), and a session signed out
    meanwhile (401) or a hot store that fails (503) gets the address put back: either answer
    means nothing changed."""
    import json

    from banata_middleware.effects import run_sync
    from banata_middleware.http import Request

    stack = stack_factory(otp=OtpConfig(sender=inbox, channels=("email", "sms")))
    api, uid = enrolled(stack, inbox)
    stack.auth.enable_otp(uid, channel="sms", to="+15551234567")

    def channels() -> list[str]:
        t = stack.records.schema.otp_factors
        with stack.records.engine.connect() as conn:
            return sorted(conn.execute(select(t.c.channel).where(t.c.user_id == uid)).scalars())

    inner = stack.auth.store
    stack.auth.store = FailOn(inner, "factor_change")
    try:
        r = api.auth("/two-factor/disable-otp", {"password": PASSWORD, "channel": "email"})
    finally:
        stack.auth.store = inner
    assert (r.status_code, r.json()["code"]) == (503, "STORE_UNAVAILABLE"), r.text
    assert channels() == ["email", "sms"]
    other_tab = stack.client()
    other_tab.http.cookies.update(api.http.cookies)
    cookie = "; ".join(f"{name}={value}" for name, value in api.http.cookies.items())
    req = Request("POST", "/api/auth/two-factor/disable-otp",
                  {"cookie": cookie, "origin": SITE, "content-type": "application/json"}, "127.0.0.1", {},
                  json.dumps({"password": PASSWORD, "channel": "email"}).encode())
    store = PausingStore(inner, "factor_change", lambda: other_tab.auth("/sign-out"))
    response = run_sync(stack.auth.gateway.handle(req), store, stack.auth.records)
    assert (response.status, json.loads(response.body)["code"]) == (401, "UNAUTHORIZED"), response.body
    assert channels() == ["email", "sms"]


def test_disable_removes_codes_by_message_too(otp_stack: Stack, inbox: Inbox) -> None:
    api, uid = enrolled(otp_stack, inbox)
    assert api.auth("/two-factor/disable", {"password": PASSWORD}).status_code == 200
    assert otp_row(otp_stack, uid) is None
    assert otp_stack.client().sign_in(EMAIL).status_code == 200


def test_trust_device_after_a_code(otp_stack: Stack, inbox: Inbox) -> None:
    _, uid = enrolled(otp_stack, inbox)
    api = pending(otp_stack)
    code = sent_code(api, inbox, uid)
    r = api.auth("/two-factor/verify-otp", {"code": code, "trustDevice": True})
    assert r.status_code == 200 and "banata.trust_device" in api.http.cookies
    api.auth("/sign-out")
    assert api.sign_in(EMAIL).status_code == 200



# -- a first authenticator app for a user with codes by message only ----------------------------

def test_a_user_with_codes_by_message_only_adds_an_authenticator_app(otp_stack: Stack, inbox: Inbox) -> None:
    """better-auth's ``enable`` adds the first app as it adds a second one: unconfirmed (sign-in
    does not offer it) until its first code, in a session whose second factor is fresh."""
    api, uid = enrolled(otp_stack, inbox)
    clock = otp_stack.clock
    clock.advance(otp_stack.auth.config.policies.factor_change_max_age + 1)
    r = api.auth("/two-factor/enable", {"password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED"), r.text
    assert api.auth("/two-factor/verify-otp", {"code": sent_code(api, inbox, uid)}).status_code == 200  # step-up
    r = api.auth("/two-factor/enable", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["method"], body["backupCodes"], body["name"]) == ("totp", [], "Authenticator")
    app = VirtualAuthenticator.from_uri(body["totpURI"], clock=clock)
    pending(otp_stack)  # asserts twoFactorMethods == ["otp"]: not before its first code
    r = api.auth("/two-factor/verify-totp", {"code": app.code()})
    assert r.status_code == 200, r.text
    assert (r.json()["authenticator"]["id"], r.json()["authenticator"]["confirmed"]) == (body["id"], True)
    assert [(a["name"], a["confirmed"]) for a in api.get("/api/auth/two-factor/list-authenticators").json()] == [
        ("Authenticator", True)]
    clock.advance(30)
    signing_in = otp_stack.client()
    assert signing_in.sign_in(EMAIL).json()["twoFactorMethods"] == ["totp", "otp"]
    assert signing_in.auth("/two-factor/verify-totp", {"code": app.code()}).status_code == 200
    assert otp_row(otp_stack, uid) == ("email", EMAIL)  # codes by message stay on beside it


def test_a_wrong_code_does_not_confirm_the_first_app_and_a_stale_session_cannot(otp_stack: Stack,
                                                                                   inbox: Inbox) -> None:
    api, _ = enrolled(otp_stack, inbox)
    r = api.auth("/two-factor/enable", {"password": PASSWORD, "name": "Phone"})
    assert r.status_code == 200 and r.json()["name"] == "Phone", r.text
    app = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=otp_stack.clock)
    wrong = next(c for c in ("000000", "111111") if c != app.code())
    r = api.auth("/two-factor/verify-totp", {"code": wrong})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE"), r.text
    otp_stack.clock.advance(otp_stack.auth.config.policies.factor_change_max_age + 1)
    r = api.auth("/two-factor/verify-totp", {"code": app.code()})
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED"), r.text
    pending(otp_stack)  # still ["otp"] only

"""Host and administrator operations: importing a secret, reset, revoking sessions, the NIST ceiling."""

from __future__ import annotations

from typing import Any

import pytest
from harness import Stack

from banata_middleware import AuthError, AuthMethods
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.stores.hot_ops import name_of

SECRET_B32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def test_imported_secret_is_asked_for_at_sign_in(stack: Stack) -> None:
    api = stack.client()
    uid = api.sign_up("imp@example.com").json()["user"]["id"]
    uri, codes = stack.auth.import_totp(uid, SECRET_B32.lower(), email="imp@example.com", backup_codes=True)
    assert len(codes) == 10 and "imp@example.com" in uri
    device = VirtualAuthenticator.from_uri(uri, clock=stack.clock)
    fresh = stack.client()
    assert fresh.sign_in("imp@example.com").status_code == 403
    assert fresh.auth("/two-factor/verify-totp", {"code": device.code()}).status_code == 200


@pytest.mark.parametrize("secret", ["JBSWY3DPEHPK3PXP", "JBSWY3DPEHPK3PXPJBSWY3DP"], ids=["80-bit", "96-bit"])
def test_imported_short_secret_verifies_at_sign_in(stack: Stack, secret: str) -> None:
    """Older systems hand out 80- and 96-bit secrets; import accepts them, so verify must too
    (pyotp >= 2.12 refused them with a ValueError: every verify-totp answered 500)."""
    api = stack.client()
    uid = api.sign_up("short@example.com").json()["user"]["id"]
    uri, _ = stack.auth.import_totp(uid, secret, email="short@example.com")
    device = VirtualAuthenticator.from_uri(uri, clock=stack.clock)
    fresh = stack.client()
    assert fresh.sign_in("short@example.com").status_code == 403
    wrong = fresh.auth("/two-factor/verify-totp", {"code": device.code(steps=5)})
    assert wrong.status_code == 401 and wrong.json()["code"] == "INVALID_CODE"
    r = fresh.auth("/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200, r.text
    assert fresh.get("/api/me").status_code == 200


def test_import_refuses_a_secret_that_is_not_base32(stack: Stack) -> None:
    with pytest.raises(ValueError):
        stack.auth.import_totp("some-user", "not base32 at all!!")
    with pytest.raises(ValueError):
        stack.auth.import_totp("{bad}", SECRET_B32)


def test_begin_second_factor_for_host_app_users(stack: Stack) -> None:
    result = stack.auth.begin_second_factor("host-user-1")
    assert not result.two_factor_required and result.token
    uri, _ = stack.auth.import_totp("host-user-1", SECRET_B32)
    result = stack.auth.begin_second_factor("host-user-1")
    assert result.two_factor_required and result.methods == ["totp"]
    api = stack.client()
    name, _, rest = result.set_cookies[0].partition("=")
    api.http.cookies.set(name, rest.split(";")[0])
    assert api.get("/api/me").json()["code"] == "TWO_FACTOR_REQUIRED"
    code = VirtualAuthenticator.from_uri(uri, clock=stack.clock).code()
    assert api.auth("/two-factor/verify-totp", {"code": code}).status_code == 200
    assert api.get("/api/me").json() == {"userId": "host-user-1", "aal": 2}


def host_session(stack: Stack, uid: str) -> Any:
    """A browser signed in by a host app that checks passwords itself (``begin_second_factor``)."""
    result = stack.auth.begin_second_factor(uid)
    api = stack.client()
    for cookie in result.set_cookies:
        name, _, rest = cookie.partition("=")
        api.http.cookies.set(name, rest.split(";")[0])
    return api


def test_a_raising_verify_password_hook_fails_closed_with_a_json_error(
        stack_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    database_up = False

    def verify_password(user_id: str, password: str) -> bool:
        if not database_up:
            raise ConnectionError(f"users database unreachable while checking {password}")
        return password == "host password"

    stack = stack_factory(verify_password=verify_password)
    api = host_session(stack, "host-user-7")
    with caplog.at_level("ERROR", logger="banata_middleware"):
        r = api.auth("/two-factor/enable", {"password": "host password"})
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "PASSWORD_CHECK_UNAVAILABLE"
    assert r.headers["content-type"].startswith("application/json")
    assert "ConnectionError" in caplog.text and "host password" not in caplog.text
    database_up = True  # the same request succeeds once the hook works, and a wrong password is 400
    assert api.auth("/two-factor/enable", {"password": "wrong"}).json()["code"] == "INVALID_PASSWORD"
    assert api.auth("/two-factor/enable", {"password": "host password"}).status_code == 200


def test_apps_with_their_own_users_get_no_public_sign_up_unless_they_ask(stack_factory: Any) -> None:
    """Given ``verify_password``, the built-in email sign-up would let anyone create an account,
    pass every protected path and enrol their own TOTP: it is off unless explicitly enabled."""
    def verify_password(user_id: str, password: str) -> bool:
        return password == "host password"

    own = stack_factory(verify_password=verify_password, auth_methods=AuthMethods(passkey=True))
    assert own.auth.config.auth_methods.email_password is False
    stranger = own.client()
    r = stranger.auth("/sign-up/email", {"email": "x@example.com", "password": "long enough", "name": "x"})
    assert r.status_code == 404, r.text
    assert stranger.sign_in("x@example.com", "long enough").status_code == 404
    assert stranger.get("/api/me").status_code == 401
    api = host_session(own, "host-user-8")  # the app's own sign-in still hands over to the second factor
    assert api.auth("/two-factor/enable", {"password": "host password"}).status_code == 200
    # both kinds of users, when the app says so
    both = stack_factory(verify_password=verify_password, auth_methods=AuthMethods(email_password=True))
    both.client().sign_up("y@example.com")
    # and without verify_password the default stays on
    plain = stack_factory(auth_methods=AuthMethods())
    assert plain.auth.config.auth_methods.email_password is True
    plain.client().sign_up("z@example.com")


def test_admin_reset_removes_2fa_unlocks_and_ends_sessions(stack: Stack) -> None:
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)
    owner = stack.client()
    uid = owner.sign_up("locked@example.com").json()["user"]["id"]
    owner.enable_2fa()
    for _ in range(3):
        api = stack.client()
        api.sign_in("locked@example.com")
        for _ in range(4):
            api.auth("/two-factor/verify-totp", {"code": "000000"})
    assert stack.client().sign_in("locked@example.com").status_code == 429
    stack.auth.reset_two_factor(uid)
    assert owner.get("/api/me").status_code == 401  # the old session is gone
    r = stack.client().sign_in("locked@example.com")
    assert r.status_code == 200 and r.json()["user"]["twoFactorEnabled"] is False
    assert "two_factor.reset_by_admin" in [e["type"] for e in events]


def test_revoke_sessions_ends_every_session_and_challenge(stack: Stack) -> None:
    a, b = stack.client(), stack.client()
    uid = a.sign_up("rev@example.com").json()["user"]["id"]
    b.sign_in("rev@example.com")
    stack.clock.advance(1)
    stack.auth.revoke_sessions(uid)
    assert a.get("/api/me").status_code == 401 and b.get("/api/me").status_code == 401
    stack.clock.advance(1)
    c = stack.client()
    c.sign_in("rev@example.com")
    assert c.get("/api/me").status_code == 200


def revoke_right_before(stack: Stack, script: str, uid: str) -> None:
    """Run revoke-sessions just before the next ``script`` op reaches the store: after the flow
    read the caller, before the atomic answer (the window the script itself must close)."""
    store: Any = stack.auth.store
    execute, aexecute = store.execute, store.aexecute
    armed = [True]

    def revoke_first(op: Any) -> None:
        if name_of(op) == script and armed:
            armed.clear()
            stack.auth.revoke_sessions(uid)

    def hooked(op: Any) -> Any:
        revoke_first(op)
        return execute(op)

    async def ahooked(op: Any) -> Any:
        revoke_first(op)
        return await aexecute(op)

    store.execute, store.aexecute = hooked, ahooked


def test_revoke_sessions_between_the_check_and_the_answer_refuses_the_code(stack: Stack) -> None:
    # The one liveness check lives in the store script, so a revocation landing after the flow
    # loaded the (then live) challenge still refuses the answer.
    owner = stack.client()
    uid = owner.sign_up("race@example.com").json()["user"]["id"]
    owner.enable_2fa()
    api = stack.client()
    assert api.sign_in("race@example.com").status_code == 403
    stack.clock.advance(30)
    revoke_right_before(stack, "challenge_answer", uid)
    r = api.auth("/two-factor/verify-totp", {"code": owner.code()})
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED"), r.text
    assert api.get("/api/me").status_code == 401


def test_hundred_consecutive_failures_lock_until_an_admin_resets(stack: Stack) -> None:
    owner = stack.client()
    uid = owner.sign_up("ceiling@example.com").json()["user"]["id"]
    owner.enable_2fa()
    streak = 0
    while streak < 100:
        stack.clock.advance(15 * 60 + 1)  # wait out each 15-minute lock, as a patient attacker does
        api = stack.client()
        assert api.sign_in("ceiling@example.com").status_code == 403
        while True:  # guess until locked; a used-up challenge is replaced by signing in again
            last = api.auth("/two-factor/verify-totp", {"code": "000000"})
            streak += 1  # every answer here is a counted failure: the lock is hit at most once a round
            if last.status_code == 429:
                break
            if last.json()["code"] == "TOO_MANY_ATTEMPTS":
                api.sign_in("ceiling@example.com")
    assert streak == 100 and last.status_code == 429
    stack.clock.advance(365 * 24 * 3600)
    r = stack.client().sign_in("ceiling@example.com")
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED")
    stack.auth.reset_two_factor(uid)
    assert stack.client().sign_in("ceiling@example.com").status_code == 200


def test_locked_host_user_gets_an_auth_error_from_begin_second_factor(stack: Stack) -> None:
    _uri, _ = stack.auth.import_totp("host-2", SECRET_B32)
    for _ in range(3):
        result = stack.auth.begin_second_factor("host-2")
        api = stack.client()
        name, _, rest = result.set_cookies[0].partition("=")
        api.http.cookies.set(name, rest.split(";")[0])
        for _ in range(4):
            api.auth("/two-factor/verify-totp", {"code": "000000"})
    with pytest.raises(AuthError) as info:
        stack.auth.begin_second_factor("host-2")
    assert info.value.status == 429


def test_own_users_get_the_account_name_the_host_gives_in_the_authenticator_label(stack: Stack) -> None:
    from urllib.parse import unquote

    # What BanataAuth(..., verify_password=..., account_name=...) sets up, on the suite's stack.
    stack.auth.flows.verify_password_hook = lambda uid, password: password == "the host's own password"
    stack.auth.flows.account_name_hook = {"host-7": "ann@example.com"}.get
    api = stack.client()
    for cookie in stack.auth.begin_second_factor("host-7").set_cookies:
        name, _, rest = cookie.partition("=")
        api.http.cookies.set(name, rest.split(";")[0])
    r = api.auth("/two-factor/enable", {"password": "the host's own password"})
    assert unquote(r.json()["totpURI"]).startswith("otpauth://totp/Banata Demo:ann@example.com?"), r.text
    r = api.auth("/two-factor/get-totp-uri", {"password": "the host's own password"})
    assert unquote(r.json()["totpURI"]).startswith("otpauth://totp/Banata Demo:ann@example.com?"), r.text


def test_without_an_account_name_the_label_is_the_user_id(stack: Stack) -> None:
    stack.auth.flows.verify_password_hook = lambda uid, password: True
    api = stack.client()
    for cookie in stack.auth.begin_second_factor("host-8").set_cookies:
        name, _, rest = cookie.partition("=")
        api.http.cookies.set(name, rest.split(";")[0])
    r = api.auth("/two-factor/enable", {"password": "anything"})
    assert r.json()["totpURI"].startswith("otpauth://totp/Banata%20Demo:host-8?"), r.text


def test_banata_auth_passes_account_name_to_the_flows(stack: Stack) -> None:
    from banata_middleware import BanataAuth

    def name_of(uid: str) -> str:
        return uid + "@example.com"

    assert BanataAuth(stack.auth.config, account_name=name_of).flows.account_name_hook is name_of

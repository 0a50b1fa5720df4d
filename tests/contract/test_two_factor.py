"""TOTP and backup codes: the setup flow, the sign-in flow, step-up, and every listed error."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from harness import PASSWORD, Api, Stack

from banata_middleware.simulator import VirtualAuthenticator


def signed_up(stack: Stack, email: str = "mfa@example.com") -> Api:
    api = stack.client()
    api.sign_up(email)
    return api


def with_2fa(stack: Stack, email: str = "mfa@example.com") -> Api:
    api = signed_up(stack, email)
    api.enable_2fa()
    return api


def pending(stack: Stack, owner: Api, email: str = "mfa@example.com", **kw: object) -> Api:
    """A fresh browser that passed the password step and now holds only the pending challenge."""
    api = stack.client(**kw)  # type: ignore[arg-type]
    api.device, api.backup_codes = owner.device, owner.backup_codes
    r = api.sign_in(email)
    assert r.status_code == 403, r.text
    return api


# -- the product docs' flows -----------------------------------------------------------------

def test_setup_flow_enable_then_confirm_turns_2fa_on(stack: Stack) -> None:
    api = signed_up(stack)
    r = api.auth("/two-factor/enable", {"password": PASSWORD})
    assert r.status_code == 200
    uri, codes = r.json()["totpURI"], r.json()["backupCodes"]
    parts = urlsplit(uri)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert parts.path == "/Banata%20Demo:mfa@example.com"
    assert query["issuer"] == "Banata Demo" and query["algorithm"] == "SHA1"
    assert query["digits"] == "6" and query["period"] == "30" and len(query["secret"]) == 32
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(c) == 8 and c.isalnum() and c.upper() == c for c in codes)
    # nothing is active until a code confirms it
    assert api.get("/api/auth/get-session").json()["user"]["twoFactorEnabled"] is False
    assert stack.client().sign_in("mfa@example.com").status_code == 200
    device = VirtualAuthenticator.from_uri(uri, clock=stack.clock)
    r = api.auth("/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200
    assert r.json()["status"] is True and r.json()["user"]["twoFactorEnabled"] is True
    session = api.get("/api/auth/get-session").json()["session"]
    assert session["aal"] == 2 and session["mfaVerifiedAt"] is not None


def test_sign_in_flow_challenge_then_totp_gives_a_session(stack: Stack) -> None:
    owner = with_2fa(stack)
    stack.clock.advance(30)
    api = stack.client()
    r = api.sign_in("mfa@example.com")
    assert r.status_code == 403
    assert r.json() == {"code": "TWO_FACTOR_REQUIRED", "message": "two-factor authentication required",
                        "twoFactorRedirect": True, "twoFactorMethods": ["totp", "backup_code"]}
    assert "banata.two_factor" in api.http.cookies and "banata.session_token" not in api.http.cookies
    assert api.get("/api/me").json()["code"] == "TWO_FACTOR_REQUIRED"
    r = api.auth("/two-factor/verify-totp", {"code": owner.code()})
    assert r.status_code == 200, r.text
    assert r.json()["token"] == api.http.cookies["banata.session_token"]
    assert r.json()["user"]["twoFactorEnabled"] is True
    assert any(c.startswith("banata.two_factor=;") for c in r.headers.get_list("set-cookie"))
    assert api.get("/api/me").json()["aal"] == 2


def test_challenge_status_200_answers_like_better_auth(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(challenge_status=200)
    with_2fa(stack)
    r = stack.client().sign_in("mfa@example.com")
    assert r.status_code == 200 and r.json()["twoFactorRedirect"] is True


# -- enable / disable / uri / codes ----------------------------------------------------------

@pytest.mark.parametrize("path", ["/two-factor/enable", "/two-factor/disable", "/two-factor/get-totp-uri",
                                  "/two-factor/generate-backup-codes", "/two-factor/verify-totp",
                                  "/two-factor/verify-backup-code"])
def test_second_factor_endpoints_need_a_session_or_challenge(stack: Stack, path: str) -> None:
    r = stack.client().auth(path, {"password": PASSWORD, "code": "123456"})
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")


@pytest.mark.parametrize("path", ["/two-factor/enable", "/two-factor/disable", "/two-factor/get-totp-uri",
                                  "/two-factor/generate-backup-codes"])
def test_wrong_reauthentication_password_is_refused(stack: Stack, path: str) -> None:
    api = with_2fa(stack) if path != "/two-factor/enable" else signed_up(stack)
    r = api.auth(path, {"password": "not the password"})
    assert (r.status_code, r.json()["code"]) == (400, "INVALID_PASSWORD")


def test_enable_while_on_adds_an_authenticator_app_and_keeps_the_backup_codes(stack: Stack) -> None:
    api = with_2fa(stack)  # more in test_two_factor_authenticators.py
    r = api.auth("/two-factor/enable", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["backupCodes"] == [] and r.json()["name"] == "Authenticator 2"


def test_get_totp_uri_returns_the_enrolled_secret(stack: Stack) -> None:
    api = with_2fa(stack)
    r = api.auth("/two-factor/get-totp-uri", {"password": PASSWORD})
    assert r.status_code == 200
    assert api.device is not None
    assert VirtualAuthenticator.from_uri(r.json()["totpURI"]).code(at=0) == api.device.code(at=0)


@pytest.mark.parametrize("path", ["/two-factor/disable", "/two-factor/get-totp-uri",
                                  "/two-factor/generate-backup-codes"])
def test_endpoints_without_2fa_set_up_answer_not_enabled(stack: Stack, path: str) -> None:
    r = signed_up(stack).auth(path, {"password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (400, "TWO_FACTOR_NOT_ENABLED")


def test_verify_without_2fa_set_up_answers_not_enabled(stack: Stack) -> None:
    api = signed_up(stack)
    for path in ("/two-factor/verify-totp", "/two-factor/verify-backup-code"):
        r = api.auth(path, {"code": "123456"})
        assert (r.status_code, r.json()["code"]) == (400, "TWO_FACTOR_NOT_ENABLED")


def test_disable_turns_2fa_off_and_sign_in_asks_nothing(stack: Stack) -> None:
    api = with_2fa(stack)
    r = api.auth("/two-factor/disable", {"password": PASSWORD})
    assert r.json() == {"status": True}
    assert api.get("/api/auth/get-session").json()["user"]["twoFactorEnabled"] is False
    assert stack.client().sign_in("mfa@example.com").status_code == 200


def test_disable_before_confirmation_cancels_the_setup(stack: Stack) -> None:
    api = signed_up(stack)
    api.auth("/two-factor/enable", {"password": PASSWORD})
    assert api.auth("/two-factor/disable", {"password": PASSWORD}).json() == {"status": True}
    r = api.auth("/two-factor/verify-totp", {"code": "123456"})
    assert r.json()["code"] == "TWO_FACTOR_NOT_ENABLED"


def test_backup_codes_from_enable_are_void_until_confirmed(stack: Stack) -> None:
    api = signed_up(stack)
    r = api.auth("/two-factor/enable", {"password": PASSWORD})
    code = r.json()["backupCodes"][0]
    r = api.auth("/two-factor/verify-backup-code", {"code": code})
    assert (r.status_code, r.json()["code"]) == (400, "TWO_FACTOR_NOT_ENABLED")
    assert stack.client().sign_in("mfa@example.com").status_code == 200  # not on yet: no challenge


def test_regenerated_backup_codes_void_the_old_set(stack: Stack) -> None:
    owner = with_2fa(stack)
    old = owner.backup_codes
    r = owner.auth("/two-factor/generate-backup-codes", {"password": PASSWORD})
    assert r.json()["status"] is True and len(r.json()["backupCodes"]) == 10
    new = r.json()["backupCodes"]
    assert not set(old) & set(new)
    api = pending(stack, owner)
    assert api.auth("/two-factor/verify-backup-code", {"code": old[0]}).json()["code"] == "INVALID_CODE"
    assert api.auth("/two-factor/verify-backup-code", {"code": new[0]}).status_code == 200


# -- verification rules ----------------------------------------------------------------------

def test_same_code_twice_in_one_window_is_refused(stack: Stack) -> None:
    owner = with_2fa(stack)
    stack.clock.advance(30)
    first = pending(stack, owner)
    code = owner.code()
    assert first.auth("/two-factor/verify-totp", {"code": code}).status_code == 200
    second = pending(stack, owner)
    r = second.auth("/two-factor/verify-totp", {"code": code})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    stack.clock.advance(30)
    assert second.auth("/two-factor/verify-totp", {"code": owner.code()}).status_code == 200


def test_the_step_accepted_at_enrolment_counts_as_used(stack: Stack) -> None:
    owner = with_2fa(stack)
    r = pending(stack, owner).auth("/two-factor/verify-totp", {"code": owner.code()})
    assert r.json()["code"] == "INVALID_CODE"


def test_a_code_from_the_step_before_or_after_is_accepted_but_two_steps_away_is_not(stack: Stack) -> None:
    owner = with_2fa(stack)
    stack.clock.advance(300)
    assert pending(stack, owner).auth("/two-factor/verify-totp", {"code": owner.code(steps=-2)}).status_code == 401
    assert pending(stack, owner).auth("/two-factor/verify-totp", {"code": owner.code(steps=-1)}).status_code == 200
    assert pending(stack, owner).auth("/two-factor/verify-totp", {"code": owner.code(steps=+2)}).status_code == 401
    assert pending(stack, owner).auth("/two-factor/verify-totp", {"code": owner.code(steps=+1)}).status_code == 200


def test_wrong_codes_count_down_attempts_then_the_challenge_is_gone(stack: Stack) -> None:
    owner = with_2fa(stack)
    api = pending(stack, owner)
    for remaining in (4, 3, 2, 1):
        r = api.auth("/two-factor/verify-totp", {"code": "000000"})
        assert (r.status_code, r.json()["code"], r.json()["attemptsRemaining"]) == (401, "INVALID_CODE", remaining)
    r = api.auth("/two-factor/verify-backup-code", {"code": "AAAAAAAA"})  # the count is shared
    assert (r.status_code, r.json()["code"]) == (401, "TOO_MANY_ATTEMPTS")
    r = api.auth("/two-factor/verify-totp", {"code": owner.code(steps=1)})
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")


def test_malformed_codes_are_invalid_not_errors(stack: Stack) -> None:
    owner = with_2fa(stack)
    for code in ("12345", "1234567", "abcdef", "１２３４５６", " ", "12 34 56", "-12345"):
        api = pending(stack, owner)
        r = api.auth("/two-factor/verify-totp", {"code": code})
        assert r.status_code in (400, 401) and r.json()["code"] in ("INVALID_CODE", "VALIDATION_ERROR"), code
    r = api.auth("/two-factor/verify-totp", {"code": 123456})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR")


def test_tenth_consecutive_failure_locks_the_user_across_challenges(stack: Stack) -> None:
    owner = with_2fa(stack)
    stack.clock.advance(30)
    failures = 0
    last = None
    while failures < 10:
        api = pending(stack, owner)
        for _ in range(min(4, 10 - failures)):
            last = api.auth("/two-factor/verify-totp", {"code": "000000"})
            failures += 1
    assert last is not None
    assert (last.status_code, last.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED")
    assert 890 <= int(last.headers["retry-after"]) <= 900
    # while locked: the right code and the right password get the same 429
    r = api.auth("/two-factor/verify-totp", {"code": owner.code()})
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED")
    r = stack.client().sign_in("mfa@example.com")
    assert (r.status_code, r.json()["code"]) == (429, "ACCOUNT_TEMPORARILY_LOCKED")
    stack.clock.advance(15 * 60)
    assert pending(stack, owner).auth("/two-factor/verify-totp", {"code": owner.code()}).status_code == 200


def test_a_success_resets_the_consecutive_failure_count(stack: Stack) -> None:
    owner = with_2fa(stack)
    for round_ in range(3):
        stack.clock.advance(30)
        api = pending(stack, owner)
        for _ in range(4):
            assert api.auth("/two-factor/verify-totp", {"code": "000000"}).status_code == 401
        assert api.auth("/two-factor/verify-totp", {"code": owner.code()}).status_code == 200, round_


def test_an_expired_challenge_is_gone(stack: Stack) -> None:
    owner = with_2fa(stack)
    api = pending(stack, owner)
    stack.clock.advance(301)
    r = api.auth("/two-factor/verify-totp", {"code": owner.code()})
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")
    assert api.get("/api/me").status_code == 401


def test_backup_code_answers_the_challenge_once(stack: Stack) -> None:
    owner = with_2fa(stack)
    code = owner.backup_codes[3]
    api = pending(stack, owner)
    r = api.auth("/two-factor/verify-backup-code", {"code": f"{code[:4].lower()}-{code[4:]} "})
    assert r.status_code == 200, r.text
    assert r.json()["backupCodesRemaining"] == 9 and r.json()["token"]
    assert api.get("/api/me").json()["aal"] == 2
    again = pending(stack, owner)
    r = again.auth("/two-factor/verify-backup-code", {"code": code})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")


def test_step_up_refreshes_mfa_verified_at(stack: Stack) -> None:
    api = with_2fa(stack)
    first = api.get("/api/auth/get-session").json()["session"]["mfaVerifiedAt"]
    stack.clock.advance(400)
    assert api.post("/api/sensitive").json()["code"] == "FRESH_TWO_FACTOR_REQUIRED"
    r = api.auth("/two-factor/verify-totp", {"code": api.code()})
    assert r.json()["status"] is True and r.json()["token"] == api.http.cookies["banata.session_token"]
    assert api.get("/api/auth/get-session").json()["session"]["mfaVerifiedAt"] > first
    assert api.post("/api/sensitive").json() == {"ok": True}


def test_step_up_with_a_backup_code(stack: Stack) -> None:
    api = with_2fa(stack)
    stack.clock.advance(400)
    r = api.auth("/two-factor/verify-backup-code", {"code": api.backup_codes[0]})
    assert r.status_code == 200 and r.json()["backupCodesRemaining"] == 9
    assert api.post("/api/sensitive").json() == {"ok": True}


def test_wrong_step_up_code_is_invalid_without_attempts_remaining(stack: Stack) -> None:
    api = with_2fa(stack)
    r = api.auth("/two-factor/verify-totp", {"code": "000000"})
    assert (r.status_code, r.json()["code"]) == (401, "INVALID_CODE")
    assert "attemptsRemaining" not in r.json()


def test_enable_accepts_only_the_totp_method(stack: Stack) -> None:
    api = signed_up(stack)
    r = api.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"})
    assert (r.status_code, r.json()["code"]) == (400, "VALIDATION_ERROR")
    r = api.auth("/two-factor/enable", {"password": PASSWORD, "method": "totp"})
    assert r.status_code == 200 and r.json()["method"] == "totp"


def test_trusted_device_skips_the_challenge_and_rotates(stack: Stack) -> None:
    owner = with_2fa(stack)
    stack.clock.advance(30)
    api = pending(stack, owner)
    r = api.auth("/two-factor/verify-totp", {"code": owner.code(), "trustDevice": True})
    assert r.status_code == 200
    trust = api.http.cookies["banata.trust_device"]
    api.auth("/sign-out")
    r = api.sign_in("mfa@example.com")
    assert r.status_code == 200, r.text
    assert api.http.cookies["banata.trust_device"] != trust
    # the old trust cookie was consumed: a copy of it no longer skips the challenge
    thief = stack.client()
    thief.http.cookies.set("banata.trust_device", trust)
    assert thief.sign_in("mfa@example.com").status_code == 403


def test_disabling_2fa_voids_trusted_devices(stack: Stack) -> None:
    owner = with_2fa(stack)
    stack.clock.advance(30)
    api = pending(stack, owner)
    api.auth("/two-factor/verify-totp", {"code": owner.code(), "trustDevice": True})
    owner.auth("/two-factor/disable", {"password": PASSWORD})
    owner.enable_2fa()
    api.auth("/sign-out")
    assert api.sign_in("mfa@example.com").status_code == 403


def test_revoke_sessions_also_ends_remembered_devices(stack: Stack) -> None:
    """"End every session" leaves no browser that signs in with the password alone at aal 2."""
    owner = with_2fa(stack)
    stack.clock.advance(30)
    api = pending(stack, owner)
    r = api.auth("/two-factor/verify-totp", {"code": owner.code(), "trustDevice": True})
    assert r.status_code == 200 and "banata.trust_device" in api.http.cookies
    stack.auth.revoke_sessions(r.json()["user"]["id"])
    assert api.get("/api/me").status_code == 401
    r = api.sign_in("mfa@example.com")
    assert r.status_code == 403 and r.json()["code"] == "TWO_FACTOR_REQUIRED", r.text


def test_trusted_device_expires_30_days_after_its_verification_however_often_used(stack: Stack) -> None:
    owner = with_2fa(stack)
    stack.clock.advance(30)
    api = pending(stack, owner)
    r = api.auth("/two-factor/verify-totp", {"code": owner.code(), "trustDevice": True})
    assert r.status_code == 200
    verified_at, ttl = stack.clock.now(), stack.auth.config.policies.trust_device_ttl
    assert ttl == 30 * 86_400
    for _ in range(4):  # a regular user: signs in every week, and the trust rotates each time
        stack.clock.advance(7 * 86_400)
        api.auth("/sign-out")
        r = api.sign_in("mfa@example.com")
        assert r.status_code == 200, r.text
        trust_cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("banata.trust_device="))
        # the rotated cookie lasts only as long as the trust has left, not another 30 days
        assert f"Max-Age={int(verified_at + ttl - stack.clock.now())};" in trust_cookie
    stack.clock.advance(verified_at + ttl - stack.clock.now() + 1)  # 30 days and a second after verifying
    api.auth("/sign-out")
    r = api.sign_in("mfa@example.com")
    assert r.status_code == 403 and r.json()["code"] == "TWO_FACTOR_REQUIRED", r.text


def test_audit_events_reach_callbacks_without_secrets(stack: Stack) -> None:
    events: list[dict[str, object]] = []
    stack.auth.audit.subscribe(events.append)
    owner = with_2fa(stack)
    stack.clock.advance(30)
    api = pending(stack, owner)
    api.auth("/two-factor/verify-totp", {"code": "000000"})
    api.auth("/two-factor/verify-totp", {"code": owner.code()})
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["session.created", "two_factor.enabled"]
    assert "two_factor.failed" in kinds and "two_factor.verified" in kinds and kinds[-1] == "session.created"
    for event in events:
        assert set(event) <= {"type", "userId", "at", "ip", "userAgent", "sessionId", "detail"}
        assert owner.device is not None and owner.device.account().secret not in str(event)

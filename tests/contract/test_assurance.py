"""Issue 14 sections 3-5: how the user authenticated (RFC 8176 amr) on the session, paths that need a
phishing-resistant factor, NIST SP 800-63B-4 AAL2 session lifetimes, and recovery codes of at least
64 bits. Both adapters x both stores (the ``stack`` fixtures)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

import pytest
from harness import PASSWORD, Api, Stack
from test_passkeys import register, sign_in, user_with_passkey

from banata_middleware.config import BackupCodePolicy, BanataAuthConfig, Policies
from banata_middleware.policy import PathPolicy
from banata_middleware.simulator import VirtualPasskey

EMAIL = "aal@example.com"


def session_of(api: Api) -> dict[str, object]:
    body = api.get("/api/auth/get-session").json()
    assert body is not None
    session: dict[str, object] = body["session"]
    return session


def amr(api: Api) -> list[str]:
    """The amr the middleware hands the app (Identity.amr via the demo's /api/amr), checked against
    get-session's."""
    me = api.get("/api/amr")
    assert me.status_code == 200, me.text
    assert me.json()["amr"] == session_of(api)["amr"]
    return list(me.json()["amr"])


def two_factor_user(stack: Stack) -> Api:
    owner = stack.client()
    owner.sign_up(EMAIL)
    owner.enable_2fa()
    stack.clock.advance(30)
    return owner


def totp_sign_in(stack: Stack, owner: Api, **extra: object) -> Api:
    api = stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    r = api.auth("/two-factor/verify-totp", {"code": owner.code(), **extra})
    assert r.status_code == 200, r.text
    return api


def stored_events(stack: Stack, uid: str) -> list[dict[str, str]]:
    key = stack.auth.flows.keys.audit(uid)
    if stack.redis is not None:
        with stack.redis.client() as c:
            return [fields for _, fields in c.xrange(key)]
    return stack.auth.store.audit_events(key)  # type: ignore[attr-defined,no-any-return]


# -- section 3: amr --------------------------------------------------------------------------------
def test_a_password_session_says_pwd(stack: Stack) -> None:
    api = stack.client()
    api.sign_up(EMAIL)
    assert amr(api) == ["pwd"]
    api.auth("/sign-out")
    assert api.sign_in(EMAIL).status_code == 200
    assert amr(api) == ["pwd"]


def test_enrolment_adds_otp_and_a_totp_or_backup_code_sign_in_says_pwd_otp(stack: Stack) -> None:
    owner = two_factor_user(stack)
    assert amr(owner) == ["pwd", "otp"]  # the enrolment step-up added its method to the password session
    assert amr(totp_sign_in(stack, owner)) == ["pwd", "otp"]
    api = stack.client()
    api.sign_in(EMAIL)
    r = api.auth("/two-factor/verify-backup-code", {"code": owner.backup_codes[0]})
    assert r.status_code == 200, r.text
    assert amr(api) == ["pwd", "otp"]  # a look-up secret is a one-time secret (see flows.session.AMR_OTP)


def test_a_trusted_device_sign_in_says_pwd_otp(stack: Stack) -> None:
    owner = two_factor_user(stack)
    api = totp_sign_in(stack, owner, trustDevice=True)
    api.auth("/sign-out")
    r = api.sign_in(EMAIL)
    assert r.status_code == 200, r.text  # the trusted device skipped the challenge
    assert amr(api) == ["pwd", "otp"]


@pytest.mark.parametrize("verified", [True, False], ids=["uv", "no-uv"])
def test_a_passkey_as_the_second_factor_says_pop_user(stack: Stack, verified: bool) -> None:
    _, key = user_with_passkey(stack, EMAIL, two_factor=True, user_verified=verified)
    api = stack.client()
    assert api.sign_in(EMAIL).status_code == 403
    assert sign_in(api, key).status_code == 200
    assert amr(api) == (["pwd", "pop", "user", "mfa"] if verified else ["pwd", "pop", "user"])


def test_a_passwordless_passkey_says_pop_user_mfa_and_a_step_up_adds_otp(stack: Stack) -> None:
    owner, key = user_with_passkey(stack, EMAIL, two_factor=True)
    api = stack.client()
    assert sign_in(api, key).status_code == 200
    assert amr(api) == ["pop", "user", "mfa"]
    stack.clock.advance(30)
    assert owner.device is not None
    r = api.auth("/two-factor/verify-totp", {"code": owner.device.code()})
    assert r.status_code == 200, r.text
    assert amr(api) == ["pop", "user", "mfa", "otp"]


def test_session_created_events_carry_the_amr(stack: Stack) -> None:
    owner = two_factor_user(stack)
    totp_sign_in(stack, owner)
    uid = owner.get("/api/me").json()["userId"]
    created = [e["detail"] for e in stored_events(stack, uid) if e["type"] == "session.created"]
    assert created == ["pwd", "pwd otp", "pwd otp"]  # sign-up, enrolment's rotation, the sign-in


def test_phishing_resistant_paths_need_a_passkey(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(phishing_resistant_paths=("/api/amr",))
    owner, key = user_with_passkey(stack, EMAIL, two_factor=True)
    stack.clock.advance(30)
    r = totp_sign_in(stack, owner).get("/api/amr")  # password + TOTP: aal 2, but phishable
    assert (r.status_code, r.json()["code"]) == (403, "PHISHING_RESISTANT_FACTOR_REQUIRED")
    assert owner.post("/api/sensitive").status_code == 200  # other paths are not affected
    api = stack.client()
    assert sign_in(api, key).status_code == 200
    assert api.get("/api/amr").status_code == 200
    second = stack.client()
    assert second.sign_in(EMAIL).status_code == 403
    assert sign_in(second, key).status_code == 200
    assert second.get("/api/amr").status_code == 200  # a passkey as the second factor counts too


def test_a_longer_fresh_rule_does_not_drop_the_phishing_resistant_one() -> None:
    policy = PathPolicy((), {"/admin/billing/*": 300}, protect_by_default=True, phishing_resistant=("/admin/*",))
    rule = policy.rule("/admin/billing/pay")
    assert rule.phishing_resistant and rule.fresh_max_age == 300
    assert policy.rule("/admin").phishing_resistant is False and policy.rule("/admin/x").phishing_resistant
    assert not PathPolicy(("/admin/health",), {}, protect_by_default=True,
                          phishing_resistant=("/admin/*",)).rule("/admin/health").phishing_resistant  # public
    opt_in = PathPolicy((), {}, protect_by_default=False, phishing_resistant=("/admin/*",))
    assert opt_in.rule("/admin/x").phishing_resistant and not opt_in.rule("/admin/x").public  # protected too
    assert opt_in.rule("/blog").public


@pytest.mark.parametrize(("value", "message"), [
    ("/admin", "not a str"),
    (("admin",), "start with '/'"),
    (("/api/auth/two-factor/*",), "lies under base_path"),
    (("/a*b",), "only at the end"),
])
def test_phishing_resistant_paths_are_checked_like_the_others(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BanataAuthConfig(app_name="x", site_url="http://localhost:3000", secret="s" * 32,
                         phishing_resistant_paths=value)  # type: ignore[arg-type]


# -- section 4: aal 2 lifetimes ------------------------------------------------------------------
def test_an_idle_aal2_session_ends_and_no_request_revives_it(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(policies=Policies(aal2_idle_timeout=3600))
    owner = two_factor_user(stack)
    password_only = stack.client()
    password_only.sign_up("one@example.com")
    for _ in range(3):  # used every 50 minutes: alive well past one hour
        stack.clock.advance(3000)
        assert owner.get("/api/me").status_code == 200
    stack.clock.advance(3601)
    r = owner.get("/api/me")
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")
    assert owner.get("/api/auth/get-session").json() is None  # the endpoints agree (Flows.load)
    stack.clock.advance(1)
    assert owner.get("/api/me").status_code == 401  # the refused request did not count as use
    assert password_only.get("/api/me").status_code == 200  # aal 1 sessions have no idle timeout


def test_an_aal2_session_ends_at_its_absolute_lifetime_even_after_a_step_up(
        stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(policies=Policies(aal2_max_lifetime=24 * 3600))
    owner = two_factor_user(stack)
    ends = stack.clock.now() - 30 + 24 * 3600  # 24 h after the enrolment, 30 s ago
    expires = datetime.fromisoformat(str(session_of(owner)["expiresAt"]).replace("Z", "+00:00")).timestamp()
    assert expires == pytest.approx(ends, abs=0.001)  # get-session tells the earlier end, not 7 days
    stack.clock.advance(23 * 3600)
    r = owner.auth("/two-factor/verify-totp", {"code": owner.code()})  # a step-up at hour 23 (rotates)
    assert r.status_code == 200, r.text
    stack.clock.set(ends - 1)
    assert owner.get("/api/me").status_code == 200
    stack.clock.set(ends + 1)
    assert owner.get("/api/me").status_code == 401  # one factor again does not renew a two-factor sign-in
    assert owner.get("/api/auth/get-session").json() is None
    api = totp_sign_in(stack, owner)  # a new sign-in starts a new lifetime
    assert api.get("/api/me").status_code == 200


def test_without_the_aal2_policies_sessions_last_session_ttl(stack: Stack) -> None:
    owner = two_factor_user(stack)
    stack.clock.advance(6 * 24 * 3600)  # idle for six days, better-auth's seven-day session
    assert owner.get("/api/me").status_code == 200


def test_nist_aal2_preset() -> None:
    p = Policies.nist_aal2()
    assert 0 < p.aal2_max_lifetime <= 24 * 3600 and 0 < p.aal2_idle_timeout <= 3600
    assert p.backup_codes.bits >= 64
    assert Policies.nist_aal2(aal2_idle_timeout=900).aal2_idle_timeout == 900
    default = Policies()
    assert (default.aal2_max_lifetime, default.aal2_idle_timeout, default.session_ttl) == (0, 0, 7 * 24 * 3600)
    with pytest.raises(ValueError):
        Policies(aal2_idle_timeout=-1)


# -- section 5: recovery codes --------------------------------------------------------------------
def test_default_backup_codes_are_ten_of_eight(stack: Stack) -> None:
    owner = two_factor_user(stack)
    assert len(owner.backup_codes) == 10
    assert all(re.fullmatch(r"[A-Z0-9]{8}", c) for c in owner.backup_codes)


def test_nist_backup_codes_have_64_bits_and_are_typed_any_way(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(policies=Policies(backup_codes=BackupCodePolicy.nist()))
    owner = two_factor_user(stack)
    assert len(owner.backup_codes) == 10
    assert all(re.fullmatch(r"[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{3}", c) for c in owner.backup_codes)
    assert BackupCodePolicy.nist().bits >= 64
    for typed in (owner.backup_codes[0].lower().replace("-", " "),   # abcde fghij klm
                  owner.backup_codes[1].replace("-", ""),            # ABCDEFGHIJKLM
                  " " + owner.backup_codes[2].lower() + " "):        # abcde-fghij-klm
        api = stack.client()
        assert api.sign_in(EMAIL).status_code == 403
        r = api.auth("/two-factor/verify-backup-code", {"code": typed})
        assert r.status_code == 200, (typed, r.text)


def test_codes_issued_before_a_longer_policy_keep_working(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    owner = two_factor_user(stack)
    stack.auth.flows.policies = Policies(backup_codes=BackupCodePolicy.nist())  # the operator raises the bar
    api = stack.client()
    api.sign_in(EMAIL)
    assert api.auth("/two-factor/verify-backup-code", {"code": owner.backup_codes[0]}).status_code == 200
    r = api.auth("/two-factor/generate-backup-codes", {"password": PASSWORD})
    assert r.status_code == 200 and all(len(c) == 15 for c in r.json()["backupCodes"])


@pytest.mark.parametrize("knobs", [{"length": 5}, {"length": 33}, {"alphabet": "abc0123456789"},
                                   {"alphabet": "AABCDEFGHIJ"}, {"alphabet": "ABC"}, {"group": 9}])
def test_backup_code_policy_refuses_what_could_not_be_typed_back(knobs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BackupCodePolicy(**knobs)  # type: ignore[arg-type]


def test_registering_a_passkey_keeps_the_amr_of_the_session(stack: Stack) -> None:
    api = stack.client()
    api.sign_up(EMAIL)
    assert register(api, VirtualPasskey()).status_code == 200
    assert amr(api) == ["pwd"]  # adding a passkey is not signing in with one

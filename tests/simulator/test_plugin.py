"""The pytest plugin's fixtures, each pinned by a small project run through ``pytester`` (in-process).

The plugin is loaded through its ``pytest11`` entry point when the installed package declares it,
else with ``-p`` (passing both would register the module twice).
"""

from __future__ import annotations

import importlib.metadata
import textwrap

import pytest

pytest_plugins = ["pytester"]

PLUGIN_MODULE = "banata_middleware.simulator.pytest_plugin"


def plugin_args() -> list[str]:
    registered = any(ep.value == PLUGIN_MODULE for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if registered else ["-p", PLUGIN_MODULE]


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_project=textwrap.dedent(source))
    return pytester.runpytest_inprocess(*plugin_args(), "-p", "no:cacheprovider", *args)


APP = '''
    import pytest
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from banata_middleware import BanataAuth, BanataAuthConfig, PasswordHashing
    from banata_middleware.adapters.starlette import BanataMiddleware

    async def me(request):
        identity = request.scope["banata"]
        return JSONResponse({"userId": identity.user_id, "aal": identity.aal})

    def build(clock, **options):
        options.setdefault("site_url", "http://testserver")
        config = BanataAuthConfig(app_name="Plug", secret="plugin-test-secret-" + "x" * 20, clock=clock,
                                  password_hashing=PasswordHashing(n=2**8), **options)
        return BanataMiddleware(Starlette(routes=[Route("/me", me)]), BanataAuth(config))
'''


def test_clocks_start_near_now_ten_seconds_into_a_step_and_reset_between_tests(pytester: pytest.Pytester) -> None:
    result = run(pytester, '''
        import time

        import pytest
        from banata_middleware.simulator import clocks

        def test_defaults(mfa_clock, mfa_device_clock):
            assert mfa_clock is clocks.shared_clock() and mfa_device_clock is clocks.device_clock()
            assert mfa_device_clock.base is mfa_clock and mfa_device_clock.seconds == 0
            assert mfa_clock.now() % 30 == 10
            assert -21 < mfa_clock.now() - time.time() <= 10  # floor to the step, then 10 s in
            mfa_clock.advance(10_000)
            mfa_device_clock.seconds = -45

        def test_next_test_starts_afresh(mfa_clock, mfa_device_clock):
            assert abs(mfa_clock.now() - time.time()) < 30 and mfa_device_clock.seconds == 0

        def test_a_failing_test_that_skews(mfa_device_clock):
            mfa_device_clock.seconds = 120
            assert False

        def test_skew_is_undone_after_a_failure_too():
            assert clocks.device_clock().seconds == 0

        @pytest.mark.mfa_time(1_234_567_890)
        def test_pinned(mfa_clock, mfa_device_clock):
            assert mfa_clock.now() == mfa_device_clock.now() == 1_234_567_890

        @pytest.mark.mfa_time()
        def test_marker_without_a_time_is_an_error(mfa_clock):
            pass
    ''')
    result.assert_outcomes(passed=4, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*use @pytest.mark.mfa_time(at) with one Unix time in seconds*"])


def test_the_phone_reads_the_device_clock_and_skew_moves_it(pytester: pytest.Pytester) -> None:
    result = run(pytester, '''
        from banata_middleware.simulator import VirtualAuthenticator, clocks

        URI = "otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&issuer=A"

        def test_skew(mfa_clock, mfa_authenticator):
            assert mfa_authenticator.clock is clocks.device_clock()
            mfa_authenticator.add_uri(URI)
            reference = VirtualAuthenticator.from_uri(URI)
            t = mfa_clock.now()
            assert mfa_authenticator.code() == reference.code(t)
            with clocks.skew(seconds=-45):
                assert mfa_authenticator.code() == reference.code(t - 45)
                mfa_clock.advance(60)
                assert mfa_authenticator.code() == reference.code(t + 60 - 45)
            assert mfa_authenticator.code() == reference.code(t + 60)
    ''')
    result.assert_outcomes(passed=1)


def test_freeze_makes_system_time_follow_the_clock(pytester: pytest.Pytester) -> None:
    result = run(pytester, '''
        import time
        from datetime import datetime, timezone

        def test_freeze(mfa_freeze, mfa_clock):
            assert mfa_freeze is mfa_clock
            assert time.time() == mfa_clock.now()
            mfa_clock.advance(3600)
            assert time.time() == mfa_clock.now()
            assert datetime.now(timezone.utc).timestamp() == mfa_clock.now()

        def test_released_after_the_test():
            from banata_middleware.simulator import clocks
            assert clocks.shared_clock().now() - time.time() >= 3600 - 30  # the clock moved on, time did not
    ''')
    result.assert_outcomes(passed=2)


def test_passkey_fixtures(pytester: pytest.Pytester) -> None:
    result = run(pytester, '''
        from banata_middleware.simulator import VirtualPasskey

        def test_default(mfa_passkey):
            assert isinstance(mfa_passkey, VirtualPasskey)
            assert mfa_passkey.algorithm == "ES256" and mfa_passkey.user_verified

        def test_factory(mfa_passkey_factory):
            a, b = mfa_passkey_factory(algorithm="EdDSA", user_verified=False), mfa_passkey_factory()
            assert a is not b and a.algorithm == "EdDSA" and not a.user_verified
    ''')
    result.assert_outcomes(passed=2)


def test_mfa_client_without_an_mfa_app_says_what_to_define(pytester: pytest.Pytester) -> None:
    result = run(pytester, '''
        def test_user(mfa_user):
            pass
    ''')
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*mfa_client needs your app: define a fixture `mfa_app`*"])


def test_enrolled_user_and_its_flows(pytester: pytest.Pytester) -> None:
    result = run(pytester, APP + '''
    @pytest.fixture
    def mfa_app(mfa_clock):
        return build(mfa_clock)

    def test_user(mfa_user, mfa_client, mfa_authenticator, mfa_clock):
        assert mfa_user.client is mfa_client
        assert mfa_client.get("/me").json() == {"userId": mfa_user.user_id, "aal": 2}
        assert mfa_user.user["twoFactorEnabled"] is True and mfa_user.user["email"] == mfa_user.email
        assert mfa_authenticator.account(name=mfa_user.email) is mfa_user.account
        assert mfa_user.totp_uri.startswith("otpauth://totp/Plug:")
        assert len(mfa_user.backup_codes) == 10
        assert mfa_user.last_step == mfa_user.account.step() == mfa_clock.now() // 30
        session = mfa_user.session()
        assert session["session"]["aal"] == 2

    def test_two_users_share_the_phone(mfa_enroll, mfa_client_factory, mfa_authenticator):
        alice = mfa_enroll(mfa_client_factory(), email="alice@example.com")
        bob = mfa_enroll(mfa_client_factory(), email="bob@example.com", password="bobs password!")
        assert {a.name for a in mfa_authenticator.accounts} == {"alice@example.com", "bob@example.com"}
        assert alice.account.secret != bob.account.secret
        assert bob.sign_in_with_totp(client=mfa_client_factory()).status_code == 200

    def test_waits_for_a_new_code_exactly_once(mfa_user, mfa_client_factory, mfa_clock):
        enrolled = mfa_clock.now()
        code = mfa_user.fresh_code()
        assert mfa_clock.now() == (enrolled // 30 + 1) * 30          # the first second of the next step
        assert mfa_user.fresh_code() == code and mfa_clock.now() == (enrolled // 30 + 1) * 30
        browser = mfa_client_factory()
        assert mfa_user.sign_in_with_totp(client=browser).status_code == 200
        assert mfa_user.last_step == mfa_clock.now() // 30
        assert browser.get("/me").json()["aal"] == 2
        mfa_user.sign_out(client=browser)
        assert browser.get("/me").status_code == 401

    def test_an_explicit_code_counts_as_spent(mfa_user, mfa_client_factory, mfa_clock):
        mfa_clock.advance(300)
        browser = mfa_client_factory()
        mfa_user.sign_in(client=browser)
        assert mfa_user.verify_totp(mfa_user.code(steps=1), client=browser).status_code == 200
        assert mfa_user.last_step == mfa_clock.now() // 30 + 1
        before = mfa_clock.now()
        mfa_user.fresh_code()
        assert mfa_clock.now() == (before // 30 + 2) * 30

    def test_backup_codes_in_order(mfa_user, mfa_client_factory):
        for n in range(3):
            browser = mfa_client_factory()
            mfa_user.sign_in(client=browser)
            r = mfa_user.verify_backup_code(client=browser)
            assert r.status_code == 200 and r.json()["backupCodesRemaining"] == 9 - n
        assert mfa_user.unused_backup_codes == mfa_user.backup_codes[3:]

    def test_step_up(mfa_user, mfa_client, mfa_clock):
        first = mfa_user.session()["session"]["mfaVerifiedAt"]
        mfa_clock.advance(100)
        assert mfa_user.step_up().json()["status"] is True
        assert mfa_user.session()["session"]["mfaVerifiedAt"] > first
    ''')
    result.assert_outcomes(passed=6)


def test_codes_by_message_land_in_mfa_inbox(pytester: pytest.Pytester) -> None:
    result = run(pytester, APP + """
    from banata_middleware import OtpConfig
    from banata_middleware.simulator.outbox import shared_inbox

    @pytest.fixture
    def mfa_app(mfa_clock):
        return build(mfa_clock, otp=OtpConfig(sender=shared_inbox()))

    def test_enable_then_sign_in_with_a_code(mfa_user, mfa_inbox, mfa_client_factory, mfa_clock):
        assert mfa_inbox is shared_inbox() and mfa_inbox.messages == []
        r = mfa_user.enable_otp()
        assert r.status_code == 200 and r.json()["status"] is True
        assert mfa_inbox.latest(user_id=mfa_user.user_id).to == mfa_user.email
        browser = mfa_client_factory()
        r = mfa_user.sign_in_with_otp(client=browser)
        assert r.status_code == 200, r.text
        assert mfa_user.latest_message().purpose == "sign_in"
        assert browser.get("/me").json()["aal"] == 2
        mfa_clock.advance(60)
        assert mfa_user.send_otp(client=browser).status_code == 200
        assert mfa_user.verify_otp(client=browser).json()["status"] is True  # a step-up, with the latest code
        assert mfa_user.latest_otp() == mfa_inbox.latest_code(user_id=mfa_user.user_id)

    def test_the_inbox_is_emptied_for_each_test(mfa_inbox, mfa_user):
        assert mfa_inbox.messages == []
        try:
            mfa_user.latest_otp()
        except AssertionError as exc:
            assert "no one-time code" in str(exc)
        else:
            raise AssertionError("latest_otp() found a code nobody sent")
    """)
    result.assert_outcomes(passed=2)


def test_enrol_options_and_failures(pytester: pytest.Pytester) -> None:
    result = run(pytester, APP + '''
    from banata_middleware.simulator import VirtualAuthenticator, clocks
    from banata_middleware.simulator.testing import MfaFlowError

    @pytest.fixture
    def mfa_app(mfa_clock):
        return build(mfa_clock)

    def test_unconfirmed(mfa_enroll):
        user = mfa_enroll(confirm=False)
        assert user.last_step is None
        assert user.session()["user"]["twoFactorEnabled"] is False
        assert user.verify_totp().json()["status"] is True      # confirms now
        assert user.session()["user"]["twoFactorEnabled"] is True

    def test_already_signed_in(mfa_enroll, mfa_client):
        r = mfa_client.post("/api/auth/sign-up/email", json={"email": "own@example.com", "password": "pass word 1"})
        assert r.status_code == 200
        user = mfa_enroll(mfa_client, sign_up=False, password="pass word 1")
        assert user.email == "own@example.com" and user.user["twoFactorEnabled"] is True

    def test_not_signed_in(mfa_enroll):
        with pytest.raises(MfaFlowError, match="signed in already"):
            mfa_enroll(sign_up=False)

    def test_own_phone_on_a_slow_clock(mfa_enroll, mfa_clock):
        phone = VirtualAuthenticator(clock=clocks.OffsetClock(mfa_clock, -20))
        user = mfa_enroll(authenticator=phone)
        assert user.authenticator is phone and user.account.clock.now() == mfa_clock.now() - 20

    def test_wrong_origin_explains_itself(mfa_enroll):
        with pytest.raises(MfaFlowError, match="(?s)answered 403.*INVALID_ORIGIN.*hint: the request's Origin"):
            mfa_enroll(origin="http://elsewhere.example")

    def test_duplicate_email(mfa_enroll):
        mfa_enroll(email="twice@example.com")
        with pytest.raises(MfaFlowError, match="sign-up: .* answered 422"):
            mfa_enroll(email="twice@example.com")

    def test_no_challenge_is_reported(mfa_user, mfa_client_factory):
        mfa_user.post("/two-factor/disable", {"password": mfa_user.password})
        with pytest.raises(MfaFlowError, match="without a two-factor challenge"):
            mfa_user.sign_in_with_totp(client=mfa_client_factory())

    def test_backup_codes_run_out(mfa_user):
        mfa_user.used_backup_codes.update(mfa_user.backup_codes)
        with pytest.raises(MfaFlowError, match="every backup code"):
            mfa_user.verify_backup_code()
    ''')
    result.assert_outcomes(passed=8)


def test_site_url_and_base_path_overrides(pytester: pytest.Pytester) -> None:
    result = run(pytester, APP + '''
    @pytest.fixture
    def mfa_site_url():
        return "https://shop.example"

    @pytest.fixture
    def mfa_base_path():
        return "/auth"

    @pytest.fixture
    def mfa_app(mfa_clock, mfa_site_url, mfa_base_path):
        return build(mfa_clock, site_url=mfa_site_url, base_path=mfa_base_path)

    def test_user(mfa_user, mfa_client):
        assert mfa_user.base_path == "/auth" and mfa_user.origin == "https://shop.example"
        assert "__Host-banata.session_token" in mfa_client.cookies
        assert mfa_client.get("/me").json()["aal"] == 2
    ''')
    result.assert_outcomes(passed=1)


def test_wsgi_apps_get_a_wsgi_client(pytester: pytest.Pytester) -> None:
    pytest.importorskip("banata_middleware.adapters.werkzeug")
    result = run(pytester, '''
        import pytest
        from banata_middleware import BanataAuth, PasswordHashing
        from banata_middleware.demo.app import demo_config
        from banata_middleware.demo.wsgi import werkzeug_app

        @pytest.fixture
        def mfa_app(mfa_clock):
            config = demo_config(secret="wsgi-plugin-secret-" + "x" * 20, site_url="http://testserver",
                                 clock=mfa_clock, password_hashing=PasswordHashing(n=2**8))
            return werkzeug_app(BanataAuth(config))

        def test_user(mfa_user, mfa_client, mfa_client_factory, mfa_clock):
            assert mfa_client.get("/api/me").json()["aal"] == 2
            browser = mfa_client_factory()
            assert mfa_user.sign_in_with_totp(client=browser).status_code == 200
            mfa_clock.advance(301)
            assert browser.post("/api/sensitive").json()["code"] == "FRESH_TWO_FACTOR_REQUIRED"
            assert mfa_user.step_up(client=browser).status_code == 200
            assert browser.post("/api/sensitive").json() == {"ok": True}
    ''')
    result.assert_outcomes(passed=1)

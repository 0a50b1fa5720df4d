"""The pytest plugin in a project of its own: a fresh directory with nothing but test files that
use the fixtures, run in a separate pytest process. The docs' FastAPI and Flask examples are run
here verbatim (extracted from ``docs/testing.md``).

The plugin is loaded through its ``pytest11`` entry point when the installed package declares it;
until then with ``-p`` (passing both would register the module twice).
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PLUGIN_MODULE = "banata_middleware.simulator.pytest_plugin"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
_EXAMPLE = re.compile(r"<!-- example: (?P<name>[\w.]+) -->\s*```python\n(?P<code>.*?)```", re.DOTALL)


def entry_point_registered() -> bool:
    return any(ep.value == PLUGIN_MODULE for ep in importlib.metadata.entry_points(group="pytest11"))


def plugin_args() -> list[str]:
    return [] if entry_point_registered() else ["-p", PLUGIN_MODULE]


def doc_examples() -> dict[str, str]:
    """The files ``docs/testing.md`` marks with ``<!-- example: NAME -->``, by name."""
    return {m["name"]: m["code"] for m in _EXAMPLE.finditer(DOCS.read_text(encoding="utf-8"))}


STARLETTE_PROJECT = '''
    import pytest
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from banata_middleware import BanataAuth, BanataAuthConfig, PasswordHashing
    from banata_middleware.adapters.starlette import BanataMiddleware
    from banata_middleware.simulator import clocks

    async def me(request):
        identity = request.scope["banata"]
        return JSONResponse({"userId": identity.user_id, "aal": identity.aal})

    @pytest.fixture
    def mfa_app(mfa_clock):
        config = BanataAuthConfig(app_name="Fresh", site_url="http://testserver",
                                  secret="fresh-project-secret-" + "x" * 20, clock=mfa_clock,
                                  password_hashing=PasswordHashing(n=2**8))
        return BanataMiddleware(Starlette(routes=[Route("/me", me)]), BanataAuth(config))

    def test_enrolled_user_has_aal2(mfa_user, mfa_client):
        assert mfa_client.get("/me").json() == {"userId": mfa_user.user_id, "aal": 2}
        assert mfa_user.account.issuer == "Fresh" and len(mfa_user.backup_codes) == 10

    def test_second_browser_signs_in_with_the_phone(mfa_user, mfa_client_factory, mfa_clock):
        browser = mfa_client_factory()
        assert browser.get("/me").status_code == 401
        challenge = mfa_user.sign_in(client=browser)
        assert challenge.status_code == 403
        assert challenge.json()["code"] == "TWO_FACTOR_REQUIRED"
        before = mfa_clock.now()
        assert mfa_user.verify_totp(client=browser).status_code == 200
        assert mfa_clock.now() > before          # waited for a code not spent at enrolment
        assert browser.get("/me").json()["aal"] == 2

    def test_a_phone_three_steps_slow_is_refused(mfa_user, mfa_client_factory):
        with clocks.skew(seconds=-90):
            r = mfa_user.sign_in_with_totp(client=mfa_client_factory())
        assert r.status_code == 401 and r.json()["code"] == "INVALID_CODE"

    @pytest.mark.mfa_time(1_800_000_010)
    def test_the_clock_can_be_pinned(mfa_clock, mfa_authenticator, mfa_enroll):
        assert mfa_clock.now() == 1_800_000_010
        user = mfa_enroll()
        assert user.account.step() == 1_800_000_010 // 30
'''


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", *args)


def test_fixtures_work_in_a_fresh_starlette_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fresh=textwrap.dedent(STARLETTE_PROJECT))
    result = run(pytester, "-v")
    result.assert_outcomes(passed=4)


def test_the_docs_fastapi_example_passes(pytester: pytest.Pytester) -> None:
    examples = doc_examples()
    pytester.makepyfile(
        shop_fastapi=examples["shop_fastapi.py"], test_shop_fastapi=examples["test_shop_fastapi.py"]
    )
    result = run(pytester, "-v")
    result.assert_outcomes(passed=6)


def test_the_docs_flask_example_passes(pytester: pytest.Pytester) -> None:
    pytest.importorskip("banata_middleware.adapters.werkzeug")
    examples = doc_examples()
    pytester.makepyfile(shop_flask=examples["shop_flask.py"], test_shop_flask=examples["test_shop_flask.py"])
    result = run(pytester, "-v")
    result.assert_outcomes(passed=3)


def test_the_fixtures_are_listed_by_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing(): pass\n")
    result = run(pytester, "--fixtures")
    assert result.ret == 0
    for name in ("mfa_clock", "mfa_device_clock", "mfa_freeze", "mfa_authenticator", "mfa_passkey",
                 "mfa_passkey_factory", "mfa_site_url", "mfa_base_path", "mfa_client_factory", "mfa_client",
                 "mfa_enroll", "mfa_user"):
        result.stdout.fnmatch_lines([f"{name}*"])


def test_the_entry_point_loads_the_plugin_and_can_be_disabled(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not entry_point_registered():
        # Until the installed metadata declares it, declare it from a stand-in distribution.
        site = pytester.mkdir("site")
        dist = site / "banata_mfa_standin-0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: banata-mfa-standin\nVersion: 0\n")
        (dist / "entry_points.txt").write_text(f"[pytest11]\nbanata_mfa = {PLUGIN_MODULE}\n")
        monkeypatch.setenv("PYTHONPATH", str(site))
    pytester.makepyfile(test_clock="def test_clock(mfa_clock): assert mfa_clock.now() > 0\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    disabled = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:banata_mfa")
    disabled.assert_outcomes(errors=1)
    disabled.stdout.fnmatch_lines(["*fixture 'mfa_clock' not found*"])


OPTIONAL = ("httpx", "freezegun", "webauthn", "cbor2", "starlette", "werkzeug", "flask", "fastapi")
@pytest.mark.parametrize(
    "blocked",
    [
        pytest.param(OPTIONAL, id="without-web-and-simulator-extras"),
        # pytest11 plugins load at every pytest start: the base install must import cleanly.
        pytest.param((*OPTIONAL, "redis"), id="without-any-extra"),
    ],
)
def test_importing_the_plugin_needs_only_the_base_install(blocked: tuple[str, ...]) -> None:
    """Block the optional dependencies, then import the plugin and use its clock and phone."""
    script = textwrap.dedent(
        """
        import sys
        BLOCKED = set(sys.argv[1:])

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked optional dependency {name}")
                return None

        sys.meta_path.insert(0, Block())
        import banata_middleware.simulator.pytest_plugin as plugin
        from banata_middleware.simulator import testing, clocks, VirtualAuthenticator
        app = VirtualAuthenticator(clock=clocks.device_clock())
        app.add_uri("otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&issuer=A")
        assert len(app.code()) == 6
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print("ok", len(plugin.__all__))
        """
    )
    done = subprocess.run([sys.executable, "-c", script, *blocked], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", "14"]

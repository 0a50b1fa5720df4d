"""Issue 9: the real better-auth JS client (``better-auth/client`` with ``twoFactorClient`` and
``@better-auth/passkey/client``'s ``passkeyClient``) works against our server unchanged.

``npm ci`` installs the pinned client from the committed ``package-lock.json`` (once per session);
``better_auth_client.mjs`` drives every step through the client and checks each result itself,
then prints a JSON summary that this side asserts on. TOTP codes come from the simulator CLI
(``banata-mfa code``), which the Node script runs as a child process.

- the product-docs contract (403 on a due second factor): against ``banata-mfa demo`` itself,
  started as a subprocess, for each framework the demo serves;
- better-auth's own contract (``challenge_status=200``, ``onTwoFactorRedirect``): the demo app
  with ``demo_config(challenge_status=200)``, served from this process (the CLI has no flag for it).

Without node/npm the tests skip, except under CI (env ``CI`` set), where they fail.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from servers import demo_cli

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from banata_middleware import BanataAuth
from banata_middleware.demo.app import demo_config, starlette_app
from banata_middleware.stores import MemoryStore

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "better_auth_client.mjs"
SECRET = "interop-test-secret-" + "z" * 40
PYTHON_CLI = [sys.executable, "-m", "banata_middleware.cli"]
READY = "banata-mfa demo listening on http://"

# What the Node script must report for each mode (its step names), in order.
STEPS_403 = [
    "signUp.email", "getSession (after sign-up)", "signOut", "signIn.email (no 2FA)",
    "twoFactor.enable (wrong password)", "twoFactor.enable", "twoFactor.verifyTotp (enrolment)", "signOut",
    "signIn.email -> 403 two-factor", "twoFactor.verifyTotp (replayed enrolment code) -> 401",
    "twoFactor.verifyTotp (sign-in, next step's code)", "getSession (aal 2)",
    "twoFactor.verifyBackupCode (sign-in)", "twoFactor.verifyBackupCode (used code) -> 401",
    "twoFactor.generateBackupCodes", "twoFactor.getTotpUri",
    "twoFactor.enable (2FA on: adds an authenticator app)", "twoFactor.verifyTotp (confirms the app added)",
    "passkey.addPasskey", "signIn.passkey (passwordless)", "signIn.email -> 403, signIn.passkey as the second factor",
    "passkey.deletePasskey", "twoFactor.disable", "signIn.email (2FA off again)",
    "listSessions", "revokeSession (a listed session's token)", "revokeOtherSessions", "revokeSessions",
    "twoFactor.enable (method otp)", "twoFactor.verifyOtp (enrolment)", "signIn.email -> 403, twoFactorMethods otp",
    "twoFactor.sendOtp (sign-in)", "twoFactor.verifyOtp (wrong code) -> 401", "twoFactor.verifyOtp (sign-in)",
    "twoFactor.sendOtp (step-up), again at once -> 429", "twoFactor.verifyOtp (step-up)",
]
STEPS_200 = [
    "signUp.email", "getSession (after sign-up)", "signOut", "signIn.email (no 2FA)",
    "twoFactor.enable (wrong password)", "twoFactor.enable", "twoFactor.verifyTotp (enrolment)", "signOut",
    "signIn.email -> 200 twoFactorRedirect, onTwoFactorRedirect fires",
    "twoFactor.verifyTotp (sign-in, next step's code)",
]


def _wsgi_available() -> bool:
    try:
        for module in ("banata_middleware.adapters.werkzeug", "banata_middleware.demo.wsgi"):
            importlib.import_module(module)
    except ImportError:
        return False
    return True


FRAMEWORKS = ["starlette", "werkzeug"] if _wsgi_available() else ["starlette"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def _node_modules_lock(*, exclusive: bool) -> Iterator[None]:
    """Test sessions share this folder (several people run the suite in one work tree): ``npm ci``
    deletes node_modules, so it takes the lock exclusively and every client run takes it shared.
    The lock is an advisory flock on the committed package-lock.json (npm ci only reads it)."""
    if fcntl is None:  # not POSIX: no locking
        yield
        return
    with open(HERE / "package-lock.json", "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- the Node side --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def node_bin() -> str:
    """``npm ci`` in tests/interop once per session; returns the node executable."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "node and npm (Node >= 20) are needed for the better-auth client interop test"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    major = int(subprocess.run([node, "-p", "process.versions.node.split('.')[0]"], capture_output=True,
                               text=True, check=True).stdout.strip())
    if major < 20:
        pytest.fail(f"Node {major} is too old for the interop test: better-auth's client needs Node >= 20")
    # --prefix keeps npm inside tests/interop whatever the caller's working directory.
    with _node_modules_lock(exclusive=True):
        result = subprocess.run([npm, "ci", "--prefix", str(HERE), "--no-audit", "--no-fund", "--prefer-offline"],
                                cwd=HERE, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"npm ci failed in {HERE}:\n{_tail(result.stdout)}\n{_tail(result.stderr)}")
    return node


def run_client(node_bin: str, base_url: str, mode: str, *extra: str) -> dict[str, Any]:
    env = {**os.environ, "BANATA_MFA_CMD": json.dumps(PYTHON_CLI)}
    with _node_modules_lock(exclusive=False):
        result = subprocess.run([node_bin, str(SCRIPT), "--base-url", base_url, "--mode", mode, *extra], cwd=HERE,
                                env=env, capture_output=True, text=True, timeout=60)
    try:
        summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(f"the Node script printed no summary (exit {result.returncode}):\n"
                    f"stdout:\n{_tail(result.stdout)}\nstderr:\n{_tail(result.stderr)}")
    if not summary["ok"] or result.returncode != 0:
        failed = [s for s in summary["steps"] if not s["ok"]]
        pytest.fail(f"better-auth client failed at {failed[-1]['step'] if failed else '?'} (exit "
                    f"{result.returncode}):\n{failed[-1]['error'] if failed else ''}\n"
                    f"requests:\n" + "\n".join(json.dumps(r) for r in summary["requests"][-8:])
                    + f"\nstderr:\n{_tail(result.stderr)}")
    return summary


def check_summary(summary: dict[str, Any], expected_steps: list[str]) -> dict[str, dict[str, Any]]:
    assert [s["step"] for s in summary["steps"]] == expected_steps
    assert all(s["ok"] for s in summary["steps"])
    pinned = json.loads((HERE / "package.json").read_text())["dependencies"]
    assert summary["versions"]["better-auth"] == pinned["better-auth"]
    assert summary["versions"]["@better-auth/passkey"] == pinned["@better-auth/passkey"]
    return {s["step"]: s for s in summary["steps"]}


# -- the servers ----------------------------------------------------------------------------------
@contextmanager
def _uvicorn(app: Any, port: int) -> Iterator[None]:
    import uvicorn

    # timeout_keep_alive as the demo CLI's: above undici's own idle timeout, so a busy machine never
    # closes a connection just as the client reuses it ("fetch failed: other side closed").
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
                                           access_log=False, timeout_keep_alive=75))
    thread = threading.Thread(target=server.run, name=f"interop-uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def _werkzeug(app: Any, port: int) -> Iterator[None]:
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"interop-werkzeug-{port}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def demo_in_process(framework: str, **overrides: Any) -> Iterator[str]:
    """The demo app with config overrides the CLI has no flag for, served from a thread."""
    port = _free_port()
    site = f"http://localhost:{port}"
    config = demo_config(secret=SECRET, site_url=site, **overrides)
    auth = BanataAuth(config, store=MemoryStore(config.clock))
    serve: Callable[[Any, int], Any]
    if framework == "starlette":
        app: Any = starlette_app(auth)
        serve = _uvicorn
    else:
        from banata_middleware.demo.wsgi import werkzeug_app

        app = werkzeug_app(auth)
        serve = _werkzeug
    with serve(app, port):
        yield site


# -- the tests ------------------------------------------------------------------------------------
def test_dates_are_javascript_iso_strings() -> None:
    """better-auth's client turns ISO strings into Dates, reading the fraction digits as
    milliseconds: every date on the wire must have exactly three (``Date.toISOString()``)."""
    from banata_middleware.flows import iso

    assert iso(1764301820699) == "2025-11-28T03:50:20.699Z"
    assert iso("1764301820007") == "2025-11-28T03:50:20.007Z"
    assert iso(1764301820000) == "2025-11-28T03:50:20.000Z"
    assert iso(0) is None and iso(None) is None


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_better_auth_client_against_demo(node_bin: str, framework: str) -> None:
    """sign-up, sign-in, enable + verifyTotp, the docs' 403 check, verifyTotp, getSession,
    verifyBackupCode, generateBackupCodes, getTotpUri, passkeys, disable, listSessions,
    revokeSession, revokeOtherSessions, revokeSessions, then codes by email (enable with method
    "otp", verifyOtp, sendOtp; the demo writes each code it "sends" to --mail-dir): all through the client."""
    with tempfile.TemporaryDirectory() as mail, demo_cli(framework, "--mail-dir", mail) as site:
        summary = run_client(node_bin, site, "403", "--mail-dir", mail)
    steps = check_summary(summary, STEPS_403)
    challenge = steps["signIn.email -> 403 two-factor"]
    assert challenge["status"] == 403 and "two-factor" in challenge["message"]
    assert challenge["code"] == "TWO_FACTOR_REQUIRED"
    assert challenge["twoFactorMethods"] == ["totp", "backup_code"]
    assert steps["twoFactor.verifyTotp (replayed enrolment code) -> 401"]["attemptsRemaining"] == 4
    assert steps["getSession (aal 2)"]["aal"] == 2
    assert steps["twoFactor.verifyBackupCode (sign-in)"]["backupCodesRemaining"] == 9
    assert steps["listSessions"]["sessions"] == 2
    paths = {r["path"] for r in summary["requests"]}
    assert steps["signIn.email -> 403, twoFactorMethods otp"]["twoFactorMethods"] == ["otp"]
    assert steps["twoFactor.verifyOtp (wrong code) -> 401"]["attemptsRemaining"] == 4
    assert steps["twoFactor.verifyOtp (sign-in)"]["amr"] == ["pwd", "otp"]
    assert {"/api/auth/two-factor/send-otp", "/api/auth/two-factor/verify-otp"} <= paths
    assert {"/api/auth/two-factor/verify-totp", "/api/auth/two-factor/verify-backup-code",
            "/api/auth/passkey/verify-authentication", "/api/auth/list-sessions", "/api/auth/revoke-session",
            "/api/auth/revoke-other-sessions", "/api/auth/revoke-sessions"} <= paths


@pytest.mark.slow
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_better_auth_on_two_factor_redirect(node_bin: str, framework: str) -> None:
    """With ``challenge_status=200`` sign-in answers better-auth's 200 ``{twoFactorRedirect: true}``
    and the client's ``onTwoFactorRedirect`` callback fires."""
    with demo_in_process(framework, challenge_status=200) as site:
        summary = run_client(node_bin, site, "200")
    steps = check_summary(summary, STEPS_200)
    assert steps["signIn.email -> 200 twoFactorRedirect, onTwoFactorRedirect fires"]["twoFactorMethods"] == [
        "totp", "backup_code"]

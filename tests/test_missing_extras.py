"""An install without an extra: the error names the extra to install, and what does not need it works.

Each case runs in a fresh interpreter whose import system refuses the extra's modules (a
``sys.meta_path`` finder), which is what a virtualenv without the extra looks like to our code and
much faster than building one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
from harness import SECRET

BLOCKER = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = set(sys.argv[1].split(","))

class NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
for name in list(sys.modules):
    if name.partition(".")[0] in BLOCKED:
        del sys.modules[name]
"""


def run_without(blocked: str, code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    script = BLOCKER + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script, blocked, *args], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


@pytest.mark.parametrize(("module", "blocked", "extra"), [
    ("banata_middleware.adapters.starlette", "starlette", "starlette"),
    ("banata_middleware.adapters.werkzeug", "werkzeug", "werkzeug"),
    ("banata_middleware.adapters.flask", "flask", "flask"),
    ("banata_middleware.stores.redis", "redis", "redis"),
    ("banata_middleware.passkeys", "webauthn", "passkeys"),
])
def test_importing_a_module_without_its_extra_names_the_pip_install_line(module: str, blocked: str,
                                                                        extra: str) -> None:
    out = run_without(blocked, f"""
        try:
            import {module}
        except ImportError as exc:
            print(type(exc).__name__, exc)
        else:
            print("imported")
    """)
    assert out.returncode == 0, out.stderr
    assert f'pip install "banata-middleware[{extra}]"' in out.stdout, out.stdout
    assert module in out.stdout


def test_the_core_and_the_memory_store_import_without_any_extra() -> None:
    out = run_without("starlette,werkzeug,flask,redis,webauthn,segno,uvicorn", f"""
        from banata_middleware import BanataAuth, BanataAuthConfig
        from banata_middleware.stores import MemoryStore
        auth = BanataAuth(BanataAuthConfig(app_name="A", site_url="http://localhost", secret={SECRET!r}))
        auth.check()
        print("ok", type(auth.store) is MemoryStore)
    """)
    assert out.stdout.strip() == "ok True", out.stderr


def test_passkeys_on_without_the_extra_name_it_when_the_auth_is_built() -> None:
    out = run_without("webauthn", f"""
        from banata_middleware import AuthMethods, BanataAuth, BanataAuthConfig
        try:
            BanataAuth(BanataAuthConfig(app_name="A", site_url="http://localhost", secret={SECRET!r},
                                        auth_methods=AuthMethods(passkey=True)))
        except ImportError as exc:
            print(exc)
    """)
    assert 'pip install "banata-middleware[passkeys]"' in out.stdout, out.stderr


@pytest.mark.parametrize(("blocked", "argv", "extra"), [
    ("segno", ["demo", "--port", "0"], "demo"),
    ("webauthn", ["demo", "--port", "0"], "demo"),
    ("redis", ["audit"], "redis"),
    ("redis", ["admin", "revoke-sessions", "--user=alice"], "redis"),
    ("redis", ["rotate-keys"], "redis"),
])
def test_cli_commands_without_their_extra_exit_2_with_the_pip_install_line(blocked: str, argv: list[str],
                                                                           extra: str) -> None:
    out = run_without(blocked, """
        from banata_middleware.cli import main
        raise SystemExit(main(sys.argv[2:]))
    """, *argv)
    assert out.returncode == 2, out.stderr
    assert f'pip install "banata-middleware[{extra}]"' in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_the_demo_with_the_memory_store_runs_without_redis() -> None:
    script = BLOCKER + textwrap.dedent("""
        from banata_middleware.cli import main
        raise SystemExit(main(sys.argv[2:]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script, "redis", "demo", "--port", "0", "--secret", SECRET],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the demo listens or dies
        assert re.fullmatch(r"banata-mfa demo listening on http://127\.0\.0\.1:\d+\n", line), (
            line, proc.stderr.read() if proc.stderr and proc.poll() is not None else "")
    finally:
        proc.terminate()
        proc.wait(timeout=10)

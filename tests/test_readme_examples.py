"""README.md's Python snippets run as written.

Every ```python block must parse. The blocks marked ``<!-- example: NAME -->`` are files of two new
projects, copied verbatim into fresh directories: FastAPI (``fastapi/myapp.py``) and Flask
(``flask/myapp.py``), each with the shared ``main.py`` and ``test_myapp.py``. Each project's README
test passes under a separate pytest, ``main.py`` builds the app from the environment, and the
own-users example (``ownusers.py``) signs a user in through ``begin_second_factor`` and enrols them
with the account name in the authenticator's label.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from harness import SECRET

README = Path(__file__).resolve().parents[1] / "README.md"
_EXAMPLE = re.compile(r"<!-- example: (?P<name>[\w./]+) -->\s*```python\n(?P<code>.*?)```", re.DOTALL)
_PYTHON = re.compile(r"```python\n(?P<code>.*?)```", re.DOTALL)
PLUGIN = "banata_middleware.simulator.pytest_plugin"


def examples() -> dict[str, str]:
    return {m["name"]: m["code"] for m in _EXAMPLE.finditer(README.read_text(encoding="utf-8"))}


def project(tmp_path: Path, framework: str) -> Path:
    """A new project directory holding the README's files for one framework, as a reader copies them."""
    found = examples()
    for name, code in found.items():
        folder, _, file = name.rpartition("/")
        if folder in ("", framework):
            (tmp_path / file).write_text(code, encoding="utf-8")
    return tmp_path


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("SITE_URL", "REDIS_URL", "DATABASE_URL", "BANATA_AUTH_SECRET")}
    return {**base, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                 os.environ.get("PYTHONPATH", "")])), **extra}


def test_every_python_snippet_parses() -> None:
    blocks = _PYTHON.findall(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    for code in blocks:
        ast.parse(code)


def test_the_examples_are_the_files_the_readme_names() -> None:
    assert set(examples()) == {"fastapi/myapp.py", "flask/myapp.py", "main.py", "test_myapp.py",
                               "fastapi/ownusers.py", "flask/ownusers.py"}


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_the_readme_test_passes_on_the_readme_app(tmp_path: Path, framework: str) -> None:
    root = project(tmp_path, framework)
    registered = any(ep.value == PLUGIN for ep in importlib.metadata.entry_points(group="pytest11"))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *([] if registered else ["-p", PLUGIN]), "test_myapp.py"],
                          cwd=root, capture_output=True, text=True, timeout=120, env=env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_main_builds_the_app_from_the_environment(tmp_path: Path, framework: str) -> None:
    root = project(tmp_path, framework)
    script = textwrap.dedent("""
        import main
        from banata_middleware.simulator.testing import app_client
        with app_client(main.app) as client:
            print(client.get("/").json(), client.get("/api/me").json()["code"])
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60,
                          env=env(BANATA_AUTH_SECRET=SECRET, SITE_URL="http://testserver"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "{'hello': 'world'} UNAUTHORIZED"


@pytest.mark.parametrize("framework", ["fastapi", "flask"])
def test_the_own_users_example_hands_over_to_the_second_factor(tmp_path: Path, framework: str) -> None:
    root = project(tmp_path, framework)
    script = textwrap.dedent("""
        from urllib.parse import unquote
        import ownusers
        from banata_middleware.simulator import VirtualAuthenticator
        from banata_middleware.simulator.testing import app_client

        with app_client(ownusers.app, origin="http://testserver") as client:
            wrong = client.post("/login", json={"username": "alice", "password": "nope"})
            assert wrong.status_code == 401, wrong.text
            ok = client.post("/login", json={"username": "alice", "password": "correct horse battery"})
            assert ok.json() == {"twoFactorRequired": False}, ok.text
            assert client.get("/api/auth/get-session").json()["user"]["id"] == "alice"
            enabled = client.post("/api/auth/two-factor/enable", json={"password": "correct horse battery"})
            uri = enabled.json()["totpURI"]
            print(unquote(uri).split("?")[0])
            phone = VirtualAuthenticator.from_uri(uri)
            assert client.post("/api/auth/two-factor/verify-totp", json={"code": phone.code()}).status_code == 200
            client.post("/api/auth/sign-out")
            again = client.post("/login", json={"username": "alice", "password": "correct horse battery"})
            print(again.json())
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=60,
                          env=env(BANATA_AUTH_SECRET=SECRET, SITE_URL="http://testserver", APP_NAME="My App"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["otpauth://totp/My App:alice@example.com", "{'twoFactorRequired': True}"]

"""``banata-mfa demo``: serves the sample app, says where, stops cleanly on a signal (both frameworks)."""

from __future__ import annotations

import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from harness import SECRET

LISTENING = re.compile(r"banata-mfa demo listening on (http://127\.0\.0\.1:\d+)\n")


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["starlette", "werkzeug"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_serves_and_exits_cleanly_on_a_signal(framework: str, sig: signal.Signals, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "banata_middleware.cli", "demo", "--framework", framework, "--port", "0",
         "--secret", SECRET, "--database-url", f"sqlite:///{tmp_path}/records.db"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the demo did not say it was listening"
        line = proc.stdout.readline()
        match = LISTENING.fullmatch(line)
        assert match, line
        with httpx.Client(base_url=match.group(1), timeout=5) as client:
            assert "banata-mfa demo" in client.get("/").text
            assert client.get("/api/me").json()["code"] == "UNAUTHORIZED"
            assert client.get("/api/auth/get-session").json() is None
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert proc.stdout.read() == ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

"""``banata-mfa code``: the same engine behind a command line."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path

import pytest

from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.cli_code import main

SEED = base64.b32encode(b"12345678901234567890").decode()
RFC_URI = f"otpauth://totp/RFC6238:vectors?secret={SEED}&digits=8"


def test_prints_the_code_at_a_given_instant(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([RFC_URI, "--at", "59"]) == 0
    assert capsys.readouterr().out == "94287082\n"


def test_skew_shifts_the_device_clock(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([RFC_URI, "--at", "1111111109", "--skew", "-30"]) == 0
    assert main([RFC_URI, "--at=1111111079", "--skew=30"]) == 0
    behind, ahead = capsys.readouterr().out.split()
    app = VirtualAuthenticator.from_uri(RFC_URI)
    assert behind == app.code(1111111079)
    assert ahead == "07081804"


def test_default_instant_is_now(capsys: pytest.CaptureFixture[str]) -> None:
    before = time.time()
    assert main([RFC_URI]) == 0
    app = VirtualAuthenticator.from_uri(RFC_URI)
    assert capsys.readouterr().out.strip() in {app.code(before), app.code(time.time())}


def test_bad_uri_exits_2_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["otpauth://hotp/x?secret=AAAA&counter=1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "hotp" in captured.err and captured.err.startswith("banata-mfa code: error:")


def test_runs_as_a_module() -> None:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "banata_middleware.simulator.cli_code", RFC_URI, "--at", "59"],
        capture_output=True, text=True, cwd=root, timeout=30, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "94287082\n"), result.stderr

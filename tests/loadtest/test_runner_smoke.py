"""CI smoke of ``python -m loadtests``: a few seconds per adapter, everything started and stopped
by the runner itself (its own redis-server, the demo under uvicorn or the pre-forked Werkzeug
server, seeded users, Locust headless)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("verify-totp", "verify-backup-code", "verify-totp wrong code", "GET /api/me")
ROW = re.compile(r"^(?P<name>.+?)\s+(?P<requests>\d+)\s+(?P<rps>[\d.]+)\s+(?P<p50>\S+)\s+(?P<p95>\S+)\s+(?P<p99>\S+)"
                 r"\s+(?P<failures>\d+)\s+(?P<errors>\d+)$")


def _wsgi_available() -> bool:
    try:
        from banata_middleware.demo.wsgi import werkzeug_app  # noqa: F401
    except ImportError:
        return False
    return True


ADAPTERS = [
    "asgi",
    pytest.param("wsgi", marks=pytest.mark.skipif(not _wsgi_available(), reason="banata_middleware.demo.wsgi missing")),
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not on PATH"),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_runner_smoke(adapter: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    # --pool-rate sizes the seeded users for the rate one class could reach alone. 8 Locust users and
    # one server worker sharing CI's 2 cores reach ~50 req/s a class; 800 (300 a class in the mixed
    # run) seeds ~1,100 TOTP users in ~15 s. The default, 2500, seeded ~3,400 (~55 s) for 3 seconds.
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests", "--adapter", adapter, "--workers", "1", "--users", "8",
         "--run-time", "5s", "--pool-rate", "800", "--seed-processes", "1", "--results", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    rows = {m["name"]: m for m in (ROW.match(line) for line in proc.stdout.splitlines()) if m}
    for name in CLASSES:
        assert name in rows, f"no table row for {name}:\n{output}"
        assert int(rows[name]["requests"]) > 0, output
        assert int(rows[name]["failures"]) == 0, output
    assert re.search(r"distinct users used: totp \d+, backup \d+, attack \d+", proc.stdout), output
    for name in ("mixed_stats.csv", "mixed_failures.csv", "mixed_stats_history.csv", "mixed.html", "report.txt"):
        assert (results / name).stat().st_size > 0, f"{name} missing from {sorted(p.name for p in results.iterdir())}"

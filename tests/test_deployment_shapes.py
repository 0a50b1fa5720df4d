"""The deployment shapes, one line each (README "Deployment shapes"): embedded (memory + SQLite),
production (Redis + a shared SQL database), and what each refuses: a Redis without a record store,
a database whose schema is behind, an unreachable database (named by ``check()``), and the demo's
``--redis-url`` without ``--database-url``."""

from __future__ import annotations

import asyncio
import re
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from harness import SECRET, free_port, scratch_database

from banata_middleware import BanataAuth, BanataAuthConfig
from banata_middleware.cli import main
from banata_middleware.stores import RedisStore
from banata_middleware.stores.records import RecordStore, SchemaOutOfDate, migrate

CONFIG = BanataAuthConfig(app_name="A", site_url="http://localhost", secret=SECRET)
LISTENING = re.compile(r"banata-mfa demo listening on (http://127\.0\.0\.1:\d+)\n")


def nowhere_redis() -> RedisStore:
    return RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)  # connects lazily


def test_embedded_is_one_line_with_its_own_sqlite_file() -> None:
    auth = BanataAuth(CONFIG)
    assert auth.records.backend == "sqlite"
    assert auth.records.current_revision() == migrate.head()
    auth.check()


def test_a_redis_store_without_records_is_refused_naming_records() -> None:
    with pytest.raises(ValueError, match=r"records=DATABASE_URL.*banata-mfa db upgrade"):
        BanataAuth(CONFIG, store=nowhere_redis())


def test_production_shape_on_redis_and_postgresql(redis_url: str, database_url: str) -> None:
    auth = BanataAuth(CONFIG, store=RedisStore.from_url(redis_url), records=database_url)
    assert auth.records.backend == "postgresql"
    auth.check()
    asyncio.run(auth.acheck())


def test_a_database_whose_schema_is_behind_is_refused_naming_the_upgrade_command(tmp_path: Path) -> None:
    behind = pytest.raises(SchemaOutOfDate, match=r"no banata tables yet.*banata-mfa db upgrade --database-url")
    with scratch_database("postgresql", str(tmp_path)) as url, behind:  # a new database: no banata tables yet
        BanataAuth(CONFIG, store=nowhere_redis(), records=url)


def test_a_sqlite_url_is_upgraded_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    auth = BanataAuth(CONFIG, records=f"sqlite:///{path}")
    assert path.exists()
    assert auth.records.current_revision() == migrate.head()


def test_a_sqlite_file_that_cannot_be_made_fails_as_a_connection_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match=rf"record store is unreachable: sqlite\+pysqlite:///{tmp_path}/no/x\.db"):
        BanataAuth(CONFIG, records=f"sqlite:///{tmp_path}/no/x.db")  # no such directory


def test_check_names_an_unreachable_database() -> None:
    port = free_port()  # nothing listens there
    auth = BanataAuth(CONFIG, records=RecordStore(f"postgresql://postgres@127.0.0.1:{port}/banata", connect_timeout=1))
    expected = rf"the record store is unreachable: postgresql\+psycopg://postgres@127\.0\.0\.1:{port}/banata: \w+"
    with pytest.raises(ConnectionError, match=expected):
        auth.check()
    with pytest.raises(ConnectionError, match=expected):
        asyncio.run(auth.acheck())


def test_a_records_url_of_an_unreachable_database_fails_as_a_connection_error_naming_it() -> None:
    port = free_port()
    with pytest.raises(ConnectionError, match=rf"record store is unreachable: .*127\.0\.0\.1:{port}/banata"):
        BanataAuth(CONFIG, store=nowhere_redis(), records=f"postgresql://postgres@127.0.0.1:{port}/banata")


def test_the_demo_refuses_redis_without_a_database_url(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BANATA_DATABASE_URL", raising=False)
    assert main(["demo", "--secret", SECRET, "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith("banata-mfa demo: ") and "--database-url" in err


def test_the_demo_help_names_its_default_database_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "sqlite:///banata-demo.db" in "".join(capsys.readouterr().out.split())  # argparse wraps at "-"


def run_demo_once(database_url: str, cwd: Path) -> str:
    """Start ``banata-mfa demo --database-url URL``, wait until it listens, stop it; its stderr."""
    proc = subprocess.Popen([sys.executable, "-m", "banata_middleware.cli", "demo", "--port", "0", "--secret",
                             SECRET, "--database-url", database_url], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "the demo did not say it was listening"
        assert LISTENING.fullmatch(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        return proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_the_demo_keeps_its_records_in_the_database_url_given(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    err = run_demo_once(f"sqlite:///{path}", tmp_path)
    assert f"records: sqlite:///{path}" in err  # said at startup, where accounts are kept
    assert RecordStore(f"sqlite:///{path}").current_revision() == migrate.head()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".db") == ["x.db"]  # no default file beside

"""Support for the storage conformance suite: a throw-away database on each real server, and one
way to run an operation sequence on the sync or the async engine.

A sequence is written once, as a generator that yields record operations and receives their replies
(the same shape as the flows): ``run_sequence`` drives it with ``store.execute`` or inside one
event loop with ``await store.aexecute``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from banata_middleware.stores.records import RecordOp, RecordStore

BACKENDS = ("sqlite", "postgresql", "mariadb")
MODES = ("sync", "async")
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
MARIADB_SERVER = "mysql+pymysql://root@127.0.0.1:3306"

Sequence = Generator[RecordOp[Any], Any, None]


def new_id(label: str = "u") -> str:
    return f"{label}-{secrets.token_hex(6)}"


def _admin_execute(server_url: str, default_db: str, sql: str) -> None:
    engine = create_engine(f"{server_url}/{default_db}", isolation_level="AUTOCOMMIT",
                           connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@contextmanager
def scratch_database(backend: str, tmp_dir: str) -> Iterator[str]:
    """A new, empty database with a random name on ``backend``'s server; dropped afterwards.
    A server that is not running FAILS the test: CI and this machine always run both."""
    name = "banata_test_" + secrets.token_hex(5)
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir}/{name}.db"
        return
    server, default_db = (PG_SERVER, "postgres") if backend == "postgresql" else (MARIADB_SERVER, "mysql")
    create = f"CREATE DATABASE {name}" + (" CHARACTER SET utf8mb4" if backend == "mariadb" else "")
    try:
        _admin_execute(server, default_db, create)
    except Exception as exc:
        pytest.fail(f"the {backend} server at {server} is needed by the storage suite and is not usable: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    try:
        yield f"{server.replace('+psycopg', '').replace('mysql+pymysql', 'mariadb')}/{name}"
    finally:
        _admin_execute(server, default_db, f"DROP DATABASE IF EXISTS {name}"
                       + (" WITH (FORCE)" if backend == "postgresql" else ""))


def run_sequence(store: RecordStore, mode: str, sequence: Callable[[], Sequence]) -> None:
    """Drive ``sequence`` with the sync engine or (in one event loop) the async engine."""
    if mode == "sync":
        gen = sequence()
        try:
            op = next(gen)
            while True:
                op = gen.send(store.execute(op))
        except StopIteration:
            return

    async def drive() -> None:
        gen = sequence()
        try:
            op = next(gen)
            while True:
                op = gen.send(await store.aexecute(op))
        except StopIteration:
            return
        finally:
            await store.adispose()  # the async pool belongs to this event loop

    asyncio.run(drive())



"""Fixtures: the suite's own redis-server and PostgreSQL database, a controllable clock, and app
stacks (adapter x store: memory + embedded SQLite, Redis + PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from harness import (
    STACK_PARAMS,
    T0,
    PostgresDatabase,
    RedisServer,
    SharedLoop,
    Stack,
    make_stack,
    scratch_database,
)

from banata_middleware import OtpConfig
from banata_middleware.otp import Inbox
from banata_middleware.simulator.clocks import FrozenClock


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if redis_server.proc is None:
        redis_server.start()
    with redis_server.client() as c:
        c.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresDatabase]:
    """The session's PostgreSQL database (a random name on 127.0.0.1:5432, dropped at the end)."""
    with scratch_database("postgresql", str(tmp_path_factory.getbasetemp())) as url:
        db = PostgresDatabase(url)
        yield db
        db.close()  # before the DROP DATABASE


@pytest.fixture
def database_url(postgres_db: PostgresDatabase) -> str:
    """The session's PostgreSQL database, emptied: the record store beside ``redis_url``."""
    return postgres_db.empty()


@pytest.fixture(scope="session")
def asgi_loop() -> Iterator[SharedLoop]:
    """The event loop every ASGI stack of the session runs in (a server's, one per worker)."""
    with start_blocking_portal() as portal:
        loop = SharedLoop(portal)
        yield loop
        loop.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture(params=STACK_PARAMS, ids=[f"{a}-{s}" for a, s in STACK_PARAMS])
def stack_factory(request: pytest.FixtureRequest, clock: FrozenClock) -> Iterator[Callable[..., Stack]]:
    """Builds stacks for the parametrized adapter x store; ``stack_factory(**config overrides)``."""
    adapter, store_kind = request.param
    server = request.getfixturevalue("redis_server") if store_kind == "redis" else None
    database_url = None
    records = None
    if server is not None:
        request.getfixturevalue("redis_url")  # flushed
        database_url = request.getfixturevalue("database_url")  # emptied
        records = request.getfixturevalue("postgres_db").records  # its engine and pool, as a server keeps them
    loop = request.getfixturevalue("asgi_loop") if adapter == "asgi" else None
    with ExitStack() as exits:
        stacks: list[Stack] = []

        def build(**overrides: Any) -> Stack:
            s = make_stack(adapter, store_kind, clock, server, exits, database_url, loop=loop, records=records,
                           **overrides)
            stacks.append(s)
            return s

        yield build
        for s in stacks:
            for c in s.clients:
                c.close()


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    return stack_factory()


@pytest.fixture
def inbox() -> Inbox:
    """Where the stacks' codes by message go (``Inbox.latest``)."""
    return Inbox()


@pytest.fixture
def otp_stack(stack_factory: Callable[..., Stack], inbox: Inbox) -> Stack:
    """A stack with codes by message (email) on, delivered to ``inbox``."""
    return stack_factory(otp=OtpConfig(sender=inbox))

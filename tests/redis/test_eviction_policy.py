"""RedisStore checks the Redis it is given (issue 12 item 6): an ``allkeys-*`` maxmemory-policy can
evict a user's two-factor record (then a password alone signs in), so it is refused unless the app
says ``allow_eviction=True``; a Redis that will not say (CONFIG renamed away, as on managed services)
gets a warning. Each case on a private redis-server started with that setting."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from harness import ADAPTERS, PASSWORD, T0, RedisServer, make_stack

from banata_middleware.simulator.clocks import FrozenClock
from banata_middleware.stores import RedisStore
from banata_middleware.stores.redis import UnsafeRedisPolicy

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def servers() -> Iterator[Callable[..., RedisServer]]:
    started: dict[tuple[str, ...], RedisServer] = {}

    def server(*args: str) -> RedisServer:
        if args not in started:
            started[args] = RedisServer(extra_args=args)
        return started[args]

    yield server
    for s in started.values():
        s.stop()


LRU = ("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
NO_CONFIG = ("--rename-command", "CONFIG", "")


def sign_up_status(adapter: str, server: RedisServer, database_url: str, **store_options: bool) -> tuple[int, str]:
    with ExitStack() as exits:
        stack = make_stack(adapter, "redis", FrozenClock(T0), server, exits, database_url)
        if store_options:
            stack.auth.store = RedisStore.from_url(server.url, **store_options)
        r = stack.client().auth("/sign-up/email", {"email": f"u-{adapter}-{len(store_options)}@example.com",
                                                   "password": PASSWORD})
        for c in stack.clients:
            c.close()
        return r.status_code, r.json().get("code", "") if r.status_code != 200 else ""


def test_an_allkeys_policy_is_refused_with_a_clear_error(servers: Callable[..., RedisServer]) -> None:
    store = RedisStore.from_url(servers(*LRU).url)
    with pytest.raises(UnsafeRedisPolicy, match=r"allkeys-lru.*noeviction.*allow_eviction=True"):
        store.check()


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_an_app_on_an_allkeys_redis_answers_503_and_logs_why(
        adapter: str, servers: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture,
        database_url: str) -> None:
    caplog.set_level(logging.WARNING, "banata_middleware.store")
    assert sign_up_status(adapter, servers(*LRU), database_url) == (503, "STORE_UNAVAILABLE")
    assert any(r.levelno == logging.ERROR and "allkeys-lru" in r.getMessage() for r in caplog.records)
    with servers(*LRU).client() as admin:
        assert admin.dbsize() == 0  # nothing written


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_allow_eviction_is_the_explicit_override(adapter: str, servers: Callable[..., RedisServer],
                                                  database_url: str) -> None:
    assert RedisStore.from_url(servers(*LRU).url, allow_eviction=True).check() == "allkeys-lru"
    assert sign_up_status(adapter, servers(*LRU), database_url, allow_eviction=True) == (200, "")


def test_fixing_the_policy_brings_the_store_back_without_a_restart(servers: Callable[..., RedisServer],
                                                                   database_url: str) -> None:
    server = RedisServer(extra_args=LRU)
    try:
        with ExitStack() as exits:
            stack = make_stack("wsgi" if "wsgi" in ADAPTERS else "asgi", "redis", FrozenClock(T0), server, exits,
                               database_url)
            api = stack.client()
            assert api.auth("/sign-up/email", {"email": "a@example.com", "password": PASSWORD}).status_code == 503
            with server.client() as admin:
                admin.config_set("maxmemory-policy", "noeviction")
            assert api.auth("/sign-up/email", {"email": "a@example.com", "password": PASSWORD}).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_noeviction_passes_without_a_warning(adapter: str, servers: Callable[..., RedisServer],
                                             caplog: pytest.LogCaptureFixture, database_url: str) -> None:
    server = servers("--maxmemory-policy", "noeviction")
    caplog.set_level(logging.WARNING, "banata_middleware.store")
    assert RedisStore.from_url(server.url).check() == "noeviction"
    assert sign_up_status(adapter, server, database_url) == (200, "")
    assert [r.getMessage() for r in caplog.records] == []


def test_a_volatile_policy_passes_with_a_warning(servers: Callable[..., RedisServer],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "banata_middleware.store")
    assert RedisStore.from_url(servers("--maxmemory-policy", "volatile-lru").url).check() == "volatile-lru"
    assert any("volatile-lru" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_a_redis_that_hides_its_config_works_with_a_warning(
        adapter: str, servers: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture,
        database_url: str) -> None:
    server = servers(*NO_CONFIG)
    caplog.set_level(logging.WARNING, "banata_middleware.store")
    assert RedisStore.from_url(server.url).check() is None
    assert any("could not read the Redis maxmemory-policy" in r.getMessage() for r in caplog.records)
    caplog.clear()
    assert sign_up_status(adapter, server, database_url) == (200, "")
    assert any("could not read" in r.getMessage() for r in caplog.records)  # the app's store warned too


def test_the_demo_refuses_an_allkeys_redis_at_startup(servers: Callable[..., RedisServer], database_url: str) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "banata_middleware.cli", "demo", "--port", "1",
                           "--secret", "s" * 40, "--redis-url", servers(*LRU).url, "--database-url", database_url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "maxmemory-policy is allkeys-lru" in done.stderr and "allow_eviction=True" in done.stderr

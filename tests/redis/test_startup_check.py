"""An unreachable Redis is said clearly: ``auth.check()`` fails fast at startup, and the log line of
a refused request names the server and the error (not just ``ConnectionError``). (An unreachable
record store: tests/test_deployment_shapes.py.)"""

from __future__ import annotations

import asyncio

import pytest
from harness import SECRET, RedisServer, free_port

from banata_middleware import BanataAuth, BanataAuthConfig
from banata_middleware.errors import AuthError
from banata_middleware.stores.redis import RedisStore


def auth_on(url: str, database_url: str) -> BanataAuth:
    return BanataAuth(BanataAuthConfig(app_name="A", site_url="http://localhost", secret=SECRET),
                      store=RedisStore.from_url(url, timeout=0.5), records=database_url)


def test_check_passes_on_a_live_redis(redis_server: RedisServer, redis_url: str, database_url: str) -> None:
    auth = auth_on(redis_url, database_url)
    auth.check()
    asyncio.run(auth.acheck())
    with redis_server.client() as c:
        assert c.keys("*") == []  # a read: nothing written


def test_check_fails_fast_naming_the_server_and_the_error(database_url: str) -> None:
    port = free_port()  # nothing listens there
    auth = auth_on(f"redis://127.0.0.1:{port}/0", database_url)
    expected = (rf"the authentication store is unreachable: Redis at 127\.0\.0\.1:{port}: ConnectionError: "
                rf"Error 111 connecting to 127\.0\.0\.1:{port}")
    with pytest.raises(ConnectionError, match=expected):
        auth.check()
    with pytest.raises(ConnectionError, match=expected):
        asyncio.run(auth.acheck())


def test_a_refused_request_logs_host_port_and_error_text_but_answers_only_503(caplog: pytest.LogCaptureFixture,
                                                                               database_url: str) -> None:
    port = free_port()
    auth = auth_on(f"redis://127.0.0.1:{port}/0", database_url)
    with caplog.at_level("WARNING", logger="banata_middleware.store"), pytest.raises(AuthError) as refused:
        auth.revoke_sessions("alice")
    assert (refused.value.status, refused.value.code) == (503, "STORE_UNAVAILABLE")
    assert f"127.0.0.1:{port}" not in str(refused.value.body())  # the client is told nothing about the server
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"store unavailable: Redis at 127.0.0.1:{port}: ConnectionError: Error 111 connecting")
    assert "refused" in line.lower()

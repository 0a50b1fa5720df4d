"""The load-test server's apps: the demo app behind the middleware, plus two bare reference endpoints.

Built from environment variables so that a production server can import them in each worker:

- ``uvicorn --factory loadtests.app:asgi_app`` (ASGI, Starlette adapter)
- ``python -m loadtests.wsgi_server`` or any WSGI server calling ``loadtests.app:wsgi_app()`` (Werkzeug adapter)

``REDIS_URL``, ``DATABASE_URL``, ``BANATA_AUTH_SECRET`` and ``SITE_URL`` say where the hot store and
the record store are, the app secret and the site's origin; the runner seeds users against the same
Redis and database with the same secret.

The reference endpoints live outside the middleware, on the same server, same process, same Redis
client settings (they use the store's own client and pool):

- ``POST /bare/two-round-trips``: reads the body, one EVALSHA of a trivial script, one GET, answers
  JSON: the Redis cost of verify-totp (load, then atomic commit) with nothing else.
- ``GET /bare/one-get``: one GET, answers JSON: the Redis cost of an authenticated pass-through.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from banata_middleware import BanataAuth
from banata_middleware.demo.app import demo_config, starlette_app
from banata_middleware.stores import RedisStore

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

__all__ = ["BARE_KEY", "BARE_SCRIPT", "BARE_VALUE", "asgi_app", "blocking_store", "build_auth", "wsgi_app"]

BARE_PREFIX = "/bare/"
# One key with a user-style hash tag, holding a value about the size of a small user record.
BARE_KEY = "banata:{u:bare}:ref"
BARE_VALUE = "x" * 200
BARE_SCRIPT = "return redis.call('EXISTS', KEYS[1])"
BARE_SHA = hashlib.sha1(BARE_SCRIPT.encode()).hexdigest()
_OK = b'{"ok":true}'


def blocking_store(url: str, *, timeout: float = 1.0, max_connections: int = 64) -> RedisStore:
    """``RedisStore.from_url``'s settings, but on redis-py's *blocking* connection pools: a request
    that finds all ``max_connections`` busy waits up to ``timeout`` for one instead of failing at
    once with ``MaxConnectionsError`` (which the store turns into 503 STORE_UNAVAILABLE)."""
    import redis
    import redis.asyncio as aioredis

    opts: dict[str, Any] = {"decode_responses": True, "socket_timeout": timeout, "socket_connect_timeout": timeout,
                            "health_check_interval": 30, "max_connections": max_connections, "timeout": timeout}
    return RedisStore(redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(url, **opts)),
                      aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(url, **opts)))


def build_auth(env: Mapping[str, str] | None = None) -> BanataAuth:
    """The demo's configuration on a Redis store and a record store, from ``REDIS_URL``, ``DATABASE_URL``
    (migrated), ``BANATA_AUTH_SECRET`` and ``SITE_URL``.

    ``LOADTEST_REDIS_POOL=blocking`` swaps the library's store (``RedisStore.from_url``) for
    :func:`blocking_store`, to compare the two under many concurrent requests per worker."""
    e = os.environ if env is None else env
    config = demo_config(secret=e["BANATA_AUTH_SECRET"], site_url=e["SITE_URL"])
    url = e["REDIS_URL"]
    store = blocking_store(url) if e.get("LOADTEST_REDIS_POOL") == "blocking" else RedisStore.from_url(url)
    return BanataAuth(config, store=store, records=e["DATABASE_URL"])


def asgi_app() -> Any:
    """uvicorn ``--factory`` entry: the demo behind the ASGI middleware, with ``/bare/*`` beside it."""
    from redis.exceptions import NoScriptError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    auth = build_auth()
    store = auth.store
    assert isinstance(store, RedisStore)
    client = store.aio
    demo = starlette_app(auth)

    async def two_round_trips(request: Request) -> Response:
        await request.body()
        try:
            await client.evalsha(BARE_SHA, 1, BARE_KEY)
        except NoScriptError:
            await client.eval(BARE_SCRIPT, 1, BARE_KEY)
        await client.get(BARE_KEY)
        return Response(_OK, media_type="application/json")

    async def one_get(request: Request) -> Response:
        await client.get(BARE_KEY)
        return Response(_OK, media_type="application/json")

    bare = Starlette(routes=[
        Route(BARE_PREFIX + "two-round-trips", two_round_trips, methods=["POST"]),
        Route(BARE_PREFIX + "one-get", one_get, methods=["GET"]),
    ])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(BARE_PREFIX):
            await bare(scope, receive, send)
        else:
            await demo(scope, receive, send)

    return app


def wsgi_app() -> Any:
    """The demo behind the WSGI (Werkzeug) middleware, with ``/bare/*`` beside it."""
    from redis.exceptions import NoScriptError
    from werkzeug.wrappers import Request, Response

    from banata_middleware.demo.wsgi import werkzeug_app

    auth = build_auth()
    store = auth.store
    assert isinstance(store, RedisStore)
    client = store.sync
    demo = werkzeug_app(auth)

    def two_round_trips(request: Request) -> Response:
        request.get_data()
        try:
            client.evalsha(BARE_SHA, 1, BARE_KEY)
        except NoScriptError:
            client.eval(BARE_SCRIPT, 1, BARE_KEY)
        client.get(BARE_KEY)
        return Response(_OK, mimetype="application/json")

    def one_get(request: Request) -> Response:
        client.get(BARE_KEY)
        return Response(_OK, mimetype="application/json")

    routes = {("POST", BARE_PREFIX + "two-round-trips"): two_round_trips, ("GET", BARE_PREFIX + "one-get"): one_get}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(BARE_PREFIX):
            view = routes.get((environ.get("REQUEST_METHOD", "GET"), path))
            if view is None:
                response = Response(json.dumps({"code": "NOT_FOUND"}), status=404, mimetype="application/json")
            else:
                response = view(Request(environ))
            return response(environ, start_response)
        return demo(environ, start_response)

    return app

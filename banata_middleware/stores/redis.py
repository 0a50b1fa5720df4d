"""Redis store: every operation is one Lua script run with EVALSHA (one round trip, atomic).

The scripts live next to this module (``lua/*.lua``), each with the race it closes. Sync and
asyncio clients run the same scripts; nothing here knows what a flow does. Any Redis error or
timeout becomes ``AuthError(503, STORE_UNAVAILABLE)``: the middleware fails closed.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import resources
from typing import Any

from .._extras import missing_extra

try:
    import redis
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisClusterException, RedisError
    from redis.retry import Retry
except ModuleNotFoundError as exc:
    raise missing_extra(__name__, "redis", exc) from exc

from ..effects import Op
from ..errors import AuthError

__all__ = ["RedisStore", "load_scripts"]

log = logging.getLogger("banata_middleware.store")


def load_scripts() -> dict[str, str]:
    folder = resources.files(__package__) / "lua"
    prelude = (folder / "_prelude.lua").read_text()
    return {
        entry.name[:-4]: prelude + "\n" + entry.read_text()
        for entry in folder.iterdir()
        if entry.name.endswith(".lua") and not entry.name.startswith("_")
    }


# RedisClusterException is not a RedisError: a cluster that cannot route must fail closed too.
_STORE_ERRORS = (RedisError, RedisClusterException, OSError)


def _unavailable(exc: Exception, where: str) -> AuthError:
    # Operators need where and why ("Redis at localhost:6379: ConnectionError: Error 111 connecting
    # ... Connection refused."). redis-py's texts name hosts and reasons, never a password. The
    # client gets neither; the note carries them to ``BanataAuth.check()``.
    detail = f"Redis at {where}: {type(exc).__name__}: {exc}"
    log.warning("store unavailable: %s", detail)
    err = AuthError(503, "STORE_UNAVAILABLE", "the authentication store is unavailable; try again shortly")
    err.add_note(detail)
    return err


def _where(client: Any) -> str:
    """host:port (or the socket path) of a client's pool, for log lines; cluster clients have no one pool."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    if "host" in kwargs:
        return f"{kwargs['host']}:{kwargs.get('port', 6379)}"
    return str(kwargs.get("path") or type(client).__name__)


class RedisStore:
    """``RedisStore.from_url("redis://localhost:6379/0")``. Timeouts are bounded so that a slow or
    paused Redis turns into 503 within ``timeout`` seconds, never a hung request.

    A cluster: pass ``sync_client=RedisCluster(...)`` and ``async_client=redis.asyncio.RedisCluster(...)``,
    made as ``from_url`` makes its clients: ``decode_responses=True``, bounded socket timeouts, and a
    retry on connection errors only (redis-py's default also retries timeouts, which can run a
    failure-counting script twice and stretches a slow Redis into a long hang).
    """

    in_process = False

    def __init__(self, sync_client: Any, async_client: Any) -> None:
        self.sync = sync_client
        self.aio = async_client
        self._scripts = load_scripts()
        self._sha = {name: hashlib.sha1(body.encode()).hexdigest() for name, body in self._scripts.items()}
        self.where = _where(sync_client)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 1.0, max_connections: int = 64) -> RedisStore:
        # Blocking pools: past ``max_connections`` commands in flight a request waits for a
        # connection (up to ``timeout``, then 503) instead of failing at once, as the default
        # pool does under load. One immediate retry, on a broken connection only (a pooled socket
        # that died with a Redis restart). Never on a timeout: the script may have run, and
        # running a failure-counting script twice would count one wrong code twice.
        errors = (RedisConnectionError,)
        opts: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "health_check_interval": 30,
            "max_connections": max_connections,
            "timeout": timeout,
        }
        sync_pool = redis.BlockingConnectionPool.from_url(url, retry=Retry(NoBackoff(), 1, supported_errors=errors),
                                                          **opts)
        async_pool = aioredis.BlockingConnectionPool.from_url(
            url, retry=AsyncRetry(NoBackoff(), 1, supported_errors=errors), **opts)
        return cls(redis.Redis(connection_pool=sync_pool), aioredis.Redis(connection_pool=async_pool))

    def execute(self, op: Op) -> Any:
        try:
            try:
                return self.sync.evalsha(self._sha[op.script], len(op.keys), *op.keys, *op.args)
            except NoScriptError:
                return self.sync.eval(self._scripts[op.script], len(op.keys), *op.keys, *op.args)
        except _STORE_ERRORS as exc:
            raise _unavailable(exc, self.where) from None

    async def aexecute(self, op: Op) -> Any:
        try:
            try:
                return await self.aio.evalsha(self._sha[op.script], len(op.keys), *op.keys, *op.args)
            except NoScriptError:
                return await self.aio.eval(self._scripts[op.script], len(op.keys), *op.keys, *op.args)
        except _STORE_ERRORS as exc:
            raise _unavailable(exc, self.where) from None

    def user_ids(self, prefix: str) -> list[str]:
        """Every user id with a record (administration: key rotation). SCAN, so it does not block
        Redis; on a cluster client redis-py scans every primary."""
        head, tail = f"{prefix}:{{u:", "}:user"
        try:
            return [k[len(head):-len(tail)] for k in self.sync.scan_iter(match=f"{head}*{tail}", count=1000)]
        except _STORE_ERRORS as exc:
            raise _unavailable(exc, self.where) from None

    def close(self) -> None:
        self.sync.close()

    async def aclose(self) -> None:
        await self.aio.aclose()

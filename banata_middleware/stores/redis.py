"""Redis store: every operation is one Lua script run with EVALSHA (one round trip, atomic).

The scripts live next to this module (``lua/*.lua``), each with the race it closes. Sync and
asyncio clients run the same scripts; nothing here knows what a flow does. Any Redis error or
timeout becomes ``AuthError(503, STORE_UNAVAILABLE)``: the middleware fails closed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from .._extras import missing_extra

try:
    import redis
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError
    from redis.retry import Retry
except ModuleNotFoundError as exc:
    raise missing_extra(__name__, "redis", exc) from exc

from ..errors import AuthError
from .hot_ops import OPS_BY_NAME, OpSpec, lua_header
from .hot_ops import HotOp as Op

hiredis_pack: Callable[..., Any] | None
try:
    from hiredis import pack_command as hiredis_pack
except ModuleNotFoundError:  # the C parser is part of the 'redis' extra, but a bare redis-py works too
    hiredis_pack = None

__all__ = ["RedisStore", "UnsafeRedisPolicy", "load_scripts"]

log = logging.getLogger("banata_middleware.store")


def load_scripts() -> dict[str, str]:
    """Each script as Redis runs it: the header binding its operation's fields to named locals
    (``hot_ops.lua_header``), the prelude's definitions it uses (``prelude_for``), the script. A
    script without a declared operation fails here, at start-up."""
    folder = resources.files(__package__) / "lua"
    prelude = _prelude_chunks((folder / "_prelude.lua").read_text())
    scripts = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".lua") and not entry.name.startswith("_"):
            name = entry.name[:-4]
            spec = OPS_BY_NAME.get(name)
            if spec is None:
                raise LookupError(f"lua/{entry.name} has no operation declared in stores/hot_ops.py")
            body = entry.read_text()
            scripts[name] = lua_header(spec) + prelude_for(body, prelude) + "\n" + body
    return scripts


_TOP_LEVEL_NAME = re.compile(r"^local\s+(?:function\s+)?(\w+)", re.M)
_FULL_LINE_COMMENT = re.compile(r"^\s*--.*$", re.M)  # the scripts use no long strings ([[...]])


def _prelude_chunks(prelude: str) -> list[tuple[str, str]]:
    """The prelude as (name, text) chunks, one per top-level ``local`` (a function or a value, with
    the comment lines above it), in their order; the file's opening comment is dropped."""
    starts = [m.start() for m in _TOP_LEVEL_NAME.finditer(prelude)]
    chunks = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(prelude)
        text = prelude[start:end]
        match = _TOP_LEVEL_NAME.match(text)
        assert match is not None
        chunks.append((match[1], text))
    return chunks


def prelude_for(body: str, chunks: list[tuple[str, str]]) -> str:
    """The prelude's definitions that ``body`` uses, directly or through the ones it uses, in the
    prelude's order. Redis runs the whole script text at every call: each ``local function`` of the
    prelude is a closure made again per call, so the guard of every protected request paid for the
    13 functions it never calls (about a quarter of its time in Redis). A name is counted as used
    wherever it appears as a word outside a whole-line comment (in a string or after code too), so a
    definition is only ever kept without need, never dropped with one: a missing one would reach for
    a global, which Redis refuses."""
    wanted: set[str] = set()
    text = _FULL_LINE_COMMENT.sub("", body)
    while True:
        found = {name for name, _ in chunks if name not in wanted and re.search(rf"\b{name}\b", text)}
        if not found:
            break
        wanted |= found
        text = _FULL_LINE_COMMENT.sub("", "\n".join(chunk for name, chunk in chunks if name in found))
    return "".join(chunk for name, chunk in chunks if name in wanted)


def _hiredis_packing(connection_class: type[Any]) -> type[Any]:
    """``connection_class`` packing commands with hiredis. redis-py's asyncio connections pack in
    Python (11 µs for the guard's EVALSHA of 3 keys and 5 arguments, 1 µs with hiredis), its sync
    ones already use hiredis. Only for commands of str and int arguments (all the scripts send); any
    other command (a multi-word name such as ``CONFIG GET``, bytes, floats) is packed as before."""
    pack = hiredis_pack
    if pack is None:
        return connection_class

    plain = frozenset((str, int))  # exactly these: not bool, not a str or int subclass

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        # The types' check in C (map, issuperset): a generator expression costs a Python frame
        # resumption per argument, 11 of them for the guard's EVALSHA.
        if " " not in args[0] and plain.issuperset(map(type, args)):
            return [pack(args)]
        return connection_class.pack_command(self, *args)  # type: ignore[no-any-return]

    return type(connection_class.__name__, (connection_class,), {"pack_command": pack_command})


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


class UnsafeRedisPolicy(RuntimeError):
    """The Redis server may evict any key (``maxmemory-policy allkeys-*``): a user's second factor
    could vanish under memory pressure and a password alone would then sign in."""


def _policy_of(reply: Any) -> str:
    """``maxmemory-policy`` from a CONFIG GET reply. A cluster answers per node: the first
    ``allkeys-*`` among them (any node that may evict is one too many), else the first named."""
    if isinstance(reply, dict):
        if "maxmemory-policy" in reply:
            return str(reply["maxmemory-policy"])
        policies = [str(v["maxmemory-policy"]) for v in reply.values()
                    if isinstance(v, dict) and "maxmemory-policy" in v]
        return next((p for p in policies if p.startswith("allkeys-")), policies[0] if policies else "")
    return ""


def _every_node(client: Any) -> dict[str, Any]:
    """CONFIG GET's arguments to ask every node of a cluster (redis-py asks only its default node
    otherwise: the other nodes' slots, and their users, would go unchecked); nothing for one Redis."""
    return {"target_nodes": "all"} if hasattr(client, "get_default_node") else {}


class RedisStore:
    """``RedisStore.from_url("redis://localhost:6379/0")``. Timeouts are bounded so that a slow or
    paused Redis turns into 503 within ``timeout`` seconds, never a hung request.

    A cluster: pass ``sync_client=RedisCluster(...)`` and ``async_client=redis.asyncio.RedisCluster(...)``,
    made as ``from_url`` makes its clients: ``decode_responses=True``, bounded socket timeouts, and a
    retry on connection errors only (redis-py's default also retries timeouts, which can run a
    failure-counting script twice and stretches a slow Redis into a long hang).

    The server's ``maxmemory-policy`` is read on first use (or by ``check()`` at startup), and again
    every ``POLICY_RECHECK_SECONDS`` (60) on use: an
    ``allkeys-*`` policy can evict a user's two-factor record, so it is refused (every operation
    answers 503 and the log says why) unless ``allow_eviction=True``. When the policy cannot be read
    (``CONFIG`` disabled, as on some managed services) a warning is logged and the store works.
    """

    in_process = False

    #: How often the policy is read again: a server switched to ``allkeys-*`` later (CONFIG SET, a
    #: restart with another config, a failover to another node) is refused within this many seconds.
    POLICY_RECHECK_SECONDS = 60.0

    def __init__(self, sync_client: Any, async_client: Any, *, allow_eviction: bool = False) -> None:
        self.sync = sync_client
        self.aio = async_client
        self.allow_eviction = allow_eviction
        self._checked = False
        self._checked_at = 0.0  # time.monotonic() of the last check that passed
        self._refusal_logged = False
        self._scripts = load_scripts()
        self._sha = {name: hashlib.sha1(body.encode()).hexdigest() for name, body in self._scripts.items()}
        #: Per operation class: (its spec, its script's SHA-1, the script).
        self._runs: dict[type[Any], tuple[OpSpec, str, str]] = {
            spec.type: (spec, self._sha[name], self._scripts[name]) for name, spec in OPS_BY_NAME.items()
            if name in self._scripts
        }
        self.where = _where(sync_client)

    # -- the server's eviction policy ---------------------------------------------------------
    def check(self) -> str | None:
        """Read the server's ``maxmemory-policy``; raise ``UnsafeRedisPolicy`` for ``allkeys-*``
        (unless ``allow_eviction``). Returns the policy, or None when the server would not say.
        Call it at startup to fail there instead of on the first request."""
        try:
            reply = self.sync.config_get("maxmemory-policy", **_every_node(self.sync))
        except ResponseError as exc:  # CONFIG renamed away or denied by an ACL
            return self._unreadable(exc)
        return self._judge(_policy_of(reply))

    async def acheck(self) -> str | None:
        """``check`` with the asyncio client."""
        try:
            reply = await self.aio.config_get("maxmemory-policy", **_every_node(self.aio))
        except ResponseError as exc:
            return self._unreadable(exc)
        return self._judge(_policy_of(reply))

    def _unreadable(self, exc: Exception) -> str | None:
        if not self._checked:  # once, not at every re-check
            log.warning("could not read the Redis maxmemory-policy (%s); make sure it is noeviction or volatile-*: "
                        "an allkeys-* policy can evict users' two-factor records", type(exc).__name__)
        self._passed()
        return None

    def _judge(self, policy: str) -> str | None:
        if not policy:
            return self._unreadable(ValueError("no maxmemory-policy in the reply"))
        if policy.startswith("allkeys-") and not self.allow_eviction:
            message = (f"Redis maxmemory-policy is {policy}: Redis may evict any key, including a user's "
                       "two-factor record, and a password alone would then sign in. Set maxmemory-policy to "
                       "noeviction (or volatile-*), or pass allow_eviction=True to RedisStore if you accept that.")
            if not self._refusal_logged:
                log.error(message)
                self._refusal_logged = True
            self._checked = False
            raise UnsafeRedisPolicy(message)
        if policy.startswith("volatile-") and not self._checked:
            log.warning("Redis maxmemory-policy is %s: under memory pressure Redis may drop sign-in throttles, "
                        "pending challenges and sessions (never factors); noeviction is safer", policy)
        self._passed()
        return policy

    def _passed(self) -> None:
        self._checked = True
        self._checked_at = time.monotonic()
        self._refusal_logged = False  # a later switch to allkeys-* is logged again

    def _due(self) -> bool:
        return not self._checked or time.monotonic() - self._checked_at >= self.POLICY_RECHECK_SECONDS

    @staticmethod
    def _refused(exc: UnsafeRedisPolicy) -> AuthError:
        # Still unchecked: the next operation asks again, so fixing the policy brings the service back.
        # The note carries the reason to ``BanataAuth.check()``; the client gets none of it.
        err = AuthError(503, "STORE_UNAVAILABLE", "the authentication store is unavailable; try again shortly")
        err.add_note(str(exc))
        return err

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 1.0, max_connections: int = 64,
                 allow_eviction: bool = False) -> RedisStore:
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
        async_pool.connection_class = _hiredis_packing(async_pool.connection_class)
        return cls(redis.Redis(connection_pool=sync_pool), aioredis.Redis(connection_pool=async_pool),
                   allow_eviction=allow_eviction)

    def execute(self, op: Op) -> Any:
        """Runs ``op``'s script; returns its typed reply (``hot_ops``)."""
        spec, sha, script = self._runs[type(op)]
        fields = spec.flat(op)
        try:
            if self._due():
                self.check()
            try:
                raw = self.sync.evalsha(sha, len(spec.keys), *fields)
            except NoScriptError:
                raw = self.sync.eval(script, len(spec.keys), *fields)
        except UnsafeRedisPolicy as exc:
            raise self._refused(exc) from None
        except _STORE_ERRORS as exc:
            raise _unavailable(exc, self.where) from None
        return spec.reply(raw)

    async def aexecute(self, op: Op) -> Any:
        spec, sha, script = self._runs[type(op)]
        fields = spec.flat(op)
        try:
            if self._due():
                await self.acheck()
            try:
                raw = await self.aio.evalsha(sha, len(spec.keys), *fields)
            except NoScriptError:
                raw = await self.aio.eval(script, len(spec.keys), *fields)
        except UnsafeRedisPolicy as exc:
            raise self._refused(exc) from None
        except _STORE_ERRORS as exc:
            raise _unavailable(exc, self.where) from None
        return spec.reply(raw)

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

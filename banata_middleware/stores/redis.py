"""Redis store: every operation is one round trip, atomic: a Lua script run with EVALSHA, or, for
the two pure reads every request makes (``guard``, ``load``), a ``MULTI``/``EXEC`` of plain reads.

The scripts live next to this module (``lua/*.lua``), each with the race it closes. Sync and
asyncio clients run the same scripts and reads; nothing here knows what a flow does. Any Redis
error or timeout becomes ``AuthError(503, STORE_UNAVAILABLE)``: the middleware fails closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, NamedTuple

from .._extras import missing_extra

try:
    import redis
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ModuleNotFoundError as exc:
    raise missing_extra(__name__, "redis", exc) from exc

from ..errors import AuthError
from .hot_ops import OPS_BY_NAME, Guard, GuardReply, Load, LoadReply, OpSpec, lua_header
from .hot_ops import HotOp as Op

hiredis_pack: Callable[..., Any] | None
try:
    from hiredis import pack_command as hiredis_pack
except ModuleNotFoundError:  # the C parser is part of the 'redis' extra, but a bare redis-py works too
    hiredis_pack = None
_HiredisParser: type[Any] | None
try:  # redis-py's asyncio hiredis parser and its "no whole reply buffered yet" sentinel (see _aexchange)
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser as _HiredisParser
except ImportError:
    _HiredisParser, _NOT_ENOUGH_DATA = None, object()

__all__ = ["READS", "RedisStore", "UnsafeRedisPolicy", "load_scripts"]

log = logging.getLogger("banata_middleware.store")


def load_scripts() -> dict[str, str]:
    """Each script as Redis runs it: the header binding its operation's fields to named locals
    (``hot_ops.lua_header``), the prelude's definitions it uses (``prelude_for``), the script. A
    script without a declared operation fails here, at start-up (so does an operation that is a
    script and a read, ``READS``, at once)."""
    folder = resources.files(__package__) / "lua"
    prelude = _prelude_chunks((folder / "_prelude.lua").read_text())
    scripts = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".lua") and not entry.name.startswith("_"):
            name = entry.name[:-4]
            spec = OPS_BY_NAME.get(name)
            if spec is None:
                raise LookupError(f"lua/{entry.name} has no operation declared in stores/hot_ops.py")
            if name in READS:
                raise LookupError(f"lua/{entry.name} is also a read of plain commands (stores/redis.py READS)")
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


# -- the two reads of every request: plain commands in one MULTI/EXEC --------------------------
#
# Redis runs a script's whole text at every call: 16.6 k instructions before it does anything and
# ~17 k per redis.call (each reply goes through RESP and back into Lua), so the guard's script cost
# Redis ~80 k instructions per protected request where a GET costs 5 k. ``guard`` and ``load`` only
# read, so they are plain HMGET/HGETALL/SMEMBERS commands sent together as MULTI ... EXEC: one round
# trip, and atomic as the script was (EXEC runs them with no other client's command between), so a
# request never decides on a user hash of one moment and a session or challenge of another; the
# writing scripts (revocation, enrolment, step-up) change both at once, and a mixed read is the
# kind of state no one has reasoned about. MULTI/EXEC costs more than a bare pipeline of the same
# commands: in Redis 27.4 k instructions per guard against 22.1 k (its script: 80 k), in the client two
# short replies ('OK', a 'QUEUED' per command), ~4 µs of ~60: cheap for that guarantee.

_NO_SESSION: tuple[None, ...] = (None,) * 7
_NO_CHALLENGE: tuple[None, ...] = (None,) * 2
_new_tuple = tuple.__new__


def _guard_commands(op: Guard) -> list[tuple[str, ...]]:
    commands: list[tuple[str, ...]] = [("HMGET", op.user_key, "tfa", "revoked_at", "rec")]
    if op.want_session == "1":
        commands.append(("HMGET", op.session_key, "exp", "created", "aal", "mfa", "amr", "auth", "seen"))
    if op.want_challenge == "1":
        commands.append(("HMGET", op.challenge_key, "exp", "created"))
    return commands


def _guard_reply(op: Guard, replies: list[Any]) -> GuardReply:
    u = replies[0]
    s = replies[1] if op.want_session == "1" else _NO_SESSION
    c = replies[-1] if op.want_challenge == "1" else _NO_CHALLENGE
    # GuardReply's fields, in its order; tuple.__new__ skips the NamedTuple's Python-level __new__.
    return _new_tuple(GuardReply, (u[0], u[1], s[0], s[1], s[2], s[3], c[0], c[1], s[4], s[5], s[6], u[2]))


def _seen_due(op: Guard, r: GuardReply) -> bool:
    """Whether this request records the session's last use ('seen'): it is live, its last use is
    at least ``seen_every_ms`` old, and it is not an aal 2 session already idle past the timeout
    (a request must not revive it: ``Flows.guard`` refuses it from the 'seen' read here, the one
    before). The memory store's twin applies the same rule."""
    if r.session_exp is None:
        return False
    now = int(op.now_ms)
    if int(r.session_exp) <= now:
        return False
    since = now - int(r.session_seen or r.session_created or now)
    idle = int(op.idle_timeout_ms)
    if idle > 0 and int(r.session_aal or 1) >= 2 and since > idle:
        return False
    return since >= int(op.seen_every_ms)


#: The last-use write, sent only when ``_seen_due`` says so: a second round trip at most once per
#: ``seen_every_ms`` per session (a minute), where the guard's script wrote it within its one. A
#: script, not an HSET: HSET on a session ended since the read (sign-out, revocation, rotation)
#: would make it again as a hash of 'seen' alone with no expiry. It decides again, atomically, on
#: what is there now (``_seen_due``'s rule), so of several requests of one session that read an old
#: 'seen' at once one writes, and 'seen' never goes back.
SEEN_SCRIPT = """\
local s = redis.call('HMGET', KEYS[1], 'exp', 'created', 'aal', 'seen')
local now = tonumber(ARGV[1])
if s[1] and tonumber(s[1]) > now then
  local idle, since = tonumber(ARGV[3]), now - tonumber(s[4] or s[2] or now)
  if not (idle > 0 and tonumber(s[3] or '1') >= 2 and since > idle) and since >= tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], 'seen', ARGV[1])
  end
end
"""
SEEN_SHA = hashlib.sha1(SEEN_SCRIPT.encode()).hexdigest()


def _seen_write(op: Guard, reply: GuardReply) -> tuple[str, int, int, int] | None:
    if _seen_due(op, reply):
        return (op.session_key, op.now_ms, op.seen_every_ms, op.idle_timeout_ms)
    return None


def _load_commands(op: Load) -> list[tuple[str, ...]]:
    commands: list[tuple[str, ...]] = [("HGETALL", op.user_key)]
    if op.want_session == "1":
        commands.append(("HGETALL", op.session_key))
    if op.want_challenge == "1":
        commands.append(("HGETALL", op.challenge_key))
    commands.append(("SMEMBERS", op.pending_codes_key))
    return commands


def _hash(reply: Any) -> dict[str, str]:
    # A flat [field, value, ...] list from the lean path; a dict from a pipeline's HGETALL callback.
    return reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))


def _load_reply(op: Load, replies: list[Any]) -> LoadReply:
    session = _hash(replies[1]) if op.want_session == "1" else {}
    challenge = _hash(replies[-2]) if op.want_challenge == "1" else {}
    return LoadReply(_hash(replies[0]), session, challenge, list(replies[-1]))


class Read(NamedTuple):
    """An operation Redis serves with plain commands in one MULTI/EXEC instead of a script."""

    commands: Callable[[Any], list[tuple[str, ...]]]  # the op -> the commands
    reply: Callable[[Any, list[Any]], Any]  # the op, EXEC's replies -> the typed reply
    #: The op and its reply -> the last-use script's KEYS[1] and ARGV when a write is due, else None.
    then: Callable[[Any, Any], tuple[str, int, int, int] | None] | None = None


#: The operations served by reads, by name: each has its twin in the memory store and no script.
READS: dict[str, Read] = {
    "guard": Read(_guard_commands, _guard_reply, _seen_write),
    "load": Read(_load_commands, _load_reply),
}

_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


def _packed(conn: Any, commands: list[tuple[str, ...]]) -> list[bytes]:
    """MULTI, ``commands``, EXEC as the chunks ``send_packed_command`` writes (one, with hiredis)."""
    if hiredis_pack is not None:
        return [b"".join((_MULTI, *map(hiredis_pack, commands), _EXEC))]
    return conn.pack_commands([("MULTI",), *commands, ("EXEC",)])  # type: ignore[no-any-return]


def _results(replies: Any) -> list[Any]:
    """EXEC's replies, or the first error among them raised (a command that failed in EXEC, such
    as WRONGTYPE, comes back as an exception object in its place)."""
    if not isinstance(replies, list):  # EXECABORT, or nil: a WATCH failed (none is set)
        raise replies if isinstance(replies, Exception) else ResponseError(f"EXEC answered {replies!r}")
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


def _exchange(conn: Any, packed: Any, queued: int) -> list[Any]:
    """Sends MULTI, the commands and EXEC at once; reads MULTI's OK, a QUEUED per command, EXEC's
    replies. Any failure on the way leaves replies unread, so the connection is dropped (the pool
    makes a new one): a later command must never read this one's answers."""
    try:
        conn.send_packed_command(packed)
        for _ in range(queued + 1):
            conn.read_response()
        replies = conn.read_response()
    except BaseException:
        conn.disconnect()
        raise
    return _results(replies)


async def _aexchange(conn: Any, packed: Any, queued: int) -> list[Any]:
    """``_exchange`` for asyncio, under one deadline (the socket timeout) for the whole exchange.

    redis-py's ``send_packed_command`` runs each write in ``asyncio.wait_for`` (a new Task), and
    ``read_response`` arms a timeout per reply and reaches the parser through three more calls:
    for the guard's four replies that made the exchange cost more client CPU than the script's one
    EVALSHA. So the write is the connection's own ``_send_packed_command`` (what
    ``send_packed_command`` runs inside ``wait_for``); the first reply comes from its parser (which
    reads the socket), and the replies that arrived with it straight from the parser's hiredis
    reader, without a coroutine each (a RESP3 push message among them is handed to the parser's
    handler, as its ``read_response`` does). Each step falls back to the public method when
    redis-py lacks the private one. What the public methods do around them is done here: connect if needed,
    the health check and its next time, error replies raised, socket errors as ``ConnectionError``
    (which the retry policy retries) and the deadline as ``TimeoutError`` (which it does not).

    Server instructions per request over HTTP (count_http_instructions.py, PostgreSQL + Redis,
    ASGI), pass-through / get-session: 581 k / 643 k with the scripts; 563 k / 642 k through
    redis-py's public methods; 536 k / 607 k reading every reply through the parser; 524 k /
    597 k as here (a bare pipeline, no MULTI/EXEC, read the same way: 523 k / 594 k). The client's
    instructions per guard in a loop on one connection: 397 k with the script, 321 k as here, 363 k
    for a bare GET (``execute_command``)."""
    loop = asyncio.get_running_loop()
    interval = conn.health_check_interval
    try:
        async with asyncio.timeout(conn.socket_timeout):
            if not conn.is_connected:
                await conn.connect()
            if interval and loop.time() > conn.next_health_check:  # check_health's own test, inline
                await conn.check_health()
            send = getattr(conn, "_send_packed_command", None)
            await (send(packed) if send is not None else conn.send_packed_command(packed, check_health=False))
            parser = getattr(conn, "_parser", None)
            gets, push = _nothing_buffered, _NoPush
            if parser is None:
                read = _reader(conn)
            else:
                read = parser.read_response
                if type(parser) is _HiredisParser:
                    gets = parser._reader.gets
                    push = getattr(parser, "_hiredis_PushNotificationType", None) or _NoPush
            for i in range(queued + 2):
                reply = gets()
                while isinstance(reply, push):  # RESP3: a push message between replies
                    await parser.handle_push_response(reply)  # type: ignore[union-attr]
                    reply = gets()
                if reply is _NOT_ENOUGH_DATA:
                    reply = await read()
                if i <= queued and isinstance(reply, Exception):  # refused when queued (an ACL): EXEC aborts
                    raise reply
            replies = reply
    except TimeoutError:  # the builtin: this deadline (redis-py's own is a RedisError)
        await conn.disconnect(nowait=True)
        raise RedisTimeoutError("Timeout in a MULTI/EXEC exchange with Redis") from None
    except OSError as exc:  # a socket error on the direct write or read
        await conn.disconnect(nowait=True)
        raise RedisConnectionError(f"Error in a MULTI/EXEC exchange with Redis: {exc}") from None
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    if interval:  # as read_response does: a connection in use needs no PING
        conn.next_health_check = loop.time() + interval
    return _results(replies)


def _nothing_buffered() -> Any:
    return _NOT_ENOUGH_DATA


class _NoPush:
    """No reply is an instance: the push type where there is none (RESP2, older hiredis)."""


def _reader(conn: Any) -> Callable[[], Any]:
    async def read() -> Any:
        return await conn.read_response(timeout=math.inf)  # no deadline of its own: the exchange's holds

    return read


def _lean(client: Any) -> bool:
    """Whether ``client`` is a plain Redis client whose pool the store may draw connections from
    itself (see ``RedisStore._multi``). A cluster client, or one bound to a single connection, goes
    through its own pipeline."""
    return (isinstance(client, (redis.Redis, aioredis.Redis)) and getattr(client, "connection", None) is None
            and hasattr(client, "connection_pool"))


class RedisStore:
    """``RedisStore.from_url("redis://localhost:6379/0")``. Timeouts are bounded so that a slow or
    paused Redis turns into 503 within ``timeout`` seconds, never a hung request. Each operation is
    its Lua script (EVALSHA), or its plain commands in one MULTI/EXEC (``READS``).

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
        #: Per operation class: how it is read with plain commands (``READS``).
        self._reads: dict[type[Any], Read] = {OPS_BY_NAME[name].type: read for name, read in READS.items()}
        self._lean_sync = _lean(sync_client)
        self._lean_aio = _lean(async_client)
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
        """Runs ``op`` (its script, or its read: ``READS``); returns its typed reply (``hot_ops``)."""
        read = self._reads.get(type(op))
        try:
            if self._due():
                self.check()
            if read is not None:
                reply = read.reply(op, self._multi(read.commands(op)))
                # The last-use write, when due (see SEEN_SCRIPT). Its failure fails the request
                # closed like any store error, though the read went through.
                if read.then is not None and (write := read.then(op, reply)) is not None:
                    self._script(SEEN_SHA, SEEN_SCRIPT, 1, *write)
                return reply
            spec, sha, script = self._runs[type(op)]
            raw = self._script(sha, script, len(spec.keys), *spec.flat(op))
        except UnsafeRedisPolicy as exc:
            raise self._refused(exc) from None
        except _STORE_ERRORS as exc:
            raise _unavailable(exc, self.where) from None
        return spec.reply(raw)

    async def aexecute(self, op: Op) -> Any:
        read = self._reads.get(type(op))
        try:
            if self._due():
                await self.acheck()
            if read is not None:
                reply = read.reply(op, await self._amulti(read.commands(op)))
                if read.then is not None and (write := read.then(op, reply)) is not None:
                    await self._ascript(SEEN_SHA, SEEN_SCRIPT, 1, *write)
                return reply
            spec, sha, script = self._runs[type(op)]
            raw = await self._ascript(sha, script, len(spec.keys), *spec.flat(op))
        except UnsafeRedisPolicy as exc:
            raise self._refused(exc) from None
        except _STORE_ERRORS as exc:
            raise _unavailable(exc, self.where) from None
        return spec.reply(raw)

    def _script(self, sha: str, script: str, numkeys: int, *fields: Any) -> Any:
        try:
            return self.sync.evalsha(sha, numkeys, *fields)
        except NoScriptError:
            return self.sync.eval(script, numkeys, *fields)

    async def _ascript(self, sha: str, script: str, numkeys: int, *fields: Any) -> Any:
        try:
            return await self.aio.evalsha(sha, numkeys, *fields)
        except NoScriptError:
            return await self.aio.eval(script, numkeys, *fields)

    def _multi(self, commands: list[tuple[str, ...]]) -> list[Any]:
        """``commands`` in one MULTI/EXEC; their replies. A plain client's connection is taken from
        its pool and used directly: redis-py's pipeline (a command stack, per-command options and
        callbacks, observability hooks) doubles the client's CPU for the guard (measured in a loop
        on one connection: 50 µs against 23 µs sync, 124 µs against 62 µs asyncio). The client's
        retry policy still applies (``from_url``: once, on a broken connection; a read is safe to
        send again)."""
        client = self.sync
        if not self._lean_sync:
            pipe = client.pipeline(transaction=True)
            for command in commands:
                pipe.execute_command(*command)
            return pipe.execute()  # type: ignore[no-any-return]
        pool = client.connection_pool
        conn = pool.get_connection()
        try:
            packed = _packed(conn, commands)
            queued = len(commands)
            return conn.retry.call_with_retry(  # type: ignore[no-any-return]
                lambda: _exchange(conn, packed, queued), lambda error: conn.disconnect())
        finally:
            pool.release(conn)

    async def _amulti(self, commands: list[tuple[str, ...]]) -> list[Any]:
        client = self.aio
        if not self._lean_aio:
            pipe = client.pipeline(transaction=True)
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute()  # type: ignore[no-any-return]
        pool = client.connection_pool
        conn = await pool.get_connection()
        try:
            packed = _packed(conn, commands)
            queued = len(commands)
            return await conn.retry.call_with_retry(  # type: ignore[no-any-return]
                lambda: _aexchange(conn, packed, queued), lambda error: conn.disconnect())
        finally:
            await pool.release(conn)

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

"""What the tests share: the suite's own redis-server and PostgreSQL database, app stacks (adapter
x store) driven through a plain synchronous httpx client, and a browser-like API client. Fixtures
live in conftest.py; tests import helpers from here (``from harness import ...``), never from conftest."""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from anyio.from_thread import BlockingPortal, start_blocking_portal
from sqlalchemy import create_engine, make_url, text

from banata_middleware import BanataAuth, PasswordHashing
from banata_middleware.demo.app import demo_config
from banata_middleware.effects import Op
from banata_middleware.errors import AuthError
from banata_middleware.http import Request
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.clocks import FrozenClock
from banata_middleware.stores import MemoryStore, RedisStore
from banata_middleware.stores.hot_ops import name_of
from banata_middleware.stores.records import RecordStore

SITE = "http://testserver"
SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"
# A fixed instant 10 s into a TOTP step, so a test never straddles a step boundary by accident.
T0 = 1_800_000_010
# How hard the randomised and repeated tests push: bounded by default (CI: 2 cores, the whole suite
# in a few minutes), about ten times harder with BANATA_TEST_DEPTH=deep (a hunt before a release).
# Each knob can also be set on its own; docs/testing.md lists them.
DEEP = os.environ.get("BANATA_TEST_DEPTH", "ci") == "deep"


def knob(variable: str, ci: int, deep: int) -> int:
    """The environment's ``variable`` when set, else ``deep`` under BANATA_TEST_DEPTH=deep, else ``ci``."""
    return int(os.environ.get(variable) or (deep if DEEP else ci))


@contextmanager
def one_worker_at_a_time(name: str) -> Iterator[None]:
    """Hold a lock shared by every pytest process on this machine (the suite's xdist workers) while a
    module races many callers against PostgreSQL: two such modules at once, one per worker, would
    come near the server's 100 connections (max_connections), and a refused connection reads as a
    503 in a race. Others wait here; nothing else is serialised."""
    path = os.path.join(tempfile.gettempdir(), f"banata-tests-{name}.lock")
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server for the test session (never the machine's shared one)."""

    def __init__(self, *, appendonly: bool = False, extra_args: tuple[str, ...] = ()) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not on PATH: the Redis tests need a real Redis (apt-get install redis-server)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="banata-redis-")
        self.appendonly = appendonly
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if self.appendonly else "no", "--dir", self.dir, "--daemonize", "no",
                *self.extra_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
MARIADB_SERVER = "mysql+pymysql://root@127.0.0.1:3306"


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
    """A new, empty database with a random name on ``backend``'s server ("sqlite": a file in
    ``tmp_dir``); dropped afterwards. A server that is not running FAILS the test, as a missing
    redis-server does: CI and this machine always run PostgreSQL and MariaDB."""
    name = "banata_test_" + secrets.token_hex(5)
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir}/{name}.db"
        return
    server, default_db = (PG_SERVER, "postgres") if backend == "postgresql" else (MARIADB_SERVER, "mysql")
    create = f"CREATE DATABASE {name}" + (" CHARACTER SET utf8mb4" if backend == "mariadb" else "")
    try:
        _admin_execute(server, default_db, create)
        if backend == "postgresql":
            # A throw-away database need not wait for each commit's WAL flush (2-4 ms on this disk, on
            # every one of the suite's tens of thousands of commits). What a transaction does, and what
            # others see once it commits, is the same; only a crash of the server could lose the last
            # commits, and nothing survives the test run anyway.
            _admin_execute(server, default_db, f"ALTER DATABASE {name} SET synchronous_commit = off")
    except Exception as exc:
        pytest.fail(f"the {backend} server at {server} is needed by the tests and is not usable: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    try:
        yield f"{server.replace('+psycopg', '').replace('mysql+pymysql', 'mariadb')}/{name}"
    finally:
        _admin_execute(server, default_db, f"DROP DATABASE IF EXISTS {name}"
                       + (" WITH (FORCE)" if backend == "postgresql" else ""))


class PostgresDatabase:
    """The test session's record store for the Redis setups, as production has it: one PostgreSQL
    database (``url``, made by ``scratch_database``) migrated once, shared by every process of a
    test, emptied between tests (``empty``, as ``redis_url`` flushes Redis)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.records = RecordStore(url)
        self.records.upgrade()

    def empty(self) -> str:
        """Delete every row of every banata table (children first), in one transaction, and start
        the audit ids at 1 again, as in a new database (a delivery consumer registered on the empty
        table starts at 0, and would otherwise wait out the id gap); the URL."""
        schema = self.records.schema
        with self.records.engine.begin() as conn:
            for table in reversed(schema.metadata.sorted_tables):
                conn.execute(table.delete())
            conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, 'id'), 1, false)"),
                         {"t": schema.audit_events.name})
        return self.url

    def close(self) -> None:
        self.records.dispose()


class SyncASGITransport(httpx.BaseTransport):
    """Drives an ASGI app from a synchronous httpx client through one event loop (a portal)."""

    def __init__(self, app: Any, portal: BlockingPortal, client: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        self.inner = httpx.ASGITransport(app=app, client=client)
        self.portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            body = request.read()
            areq = httpx.Request(request.method, request.url, headers=request.headers, content=body)
            resp = await self.inner.handle_async_request(areq)
            data = b"".join([part async for part in resp.aiter_raw()])  # still encoded, as sent
            return resp.status_code, resp.headers.raw, data

        status, headers, data = self.portal.call(call)
        return httpx.Response(status, headers=headers, content=data)


@dataclass
class Stack:
    """One app under test: the library object, its store and a way to make clients."""

    adapter: str
    store_kind: str
    auth: BanataAuth
    app: Any
    clock: FrozenClock
    transport_factory: Callable[[str], httpx.BaseTransport]
    redis: RedisServer | None = None
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def records(self) -> RecordStore:
        return self.auth.records

    def client(self, *, ip: str = "127.0.0.1", origin: str | None = SITE) -> Api:
        headers = {"origin": origin} if origin else {}
        c = httpx.Client(transport=self.transport_factory(ip), base_url=SITE, headers=headers)
        self.clients.append(c)
        return Api(c, self)


ADAPTERS: dict[str, Callable[[BanataAuth], Any]] = {}


def _starlette(auth: BanataAuth) -> Any:
    from banata_middleware.demo.app import starlette_app

    return starlette_app(auth)


ADAPTERS["asgi"] = _starlette


def _wsgi_available() -> bool:
    try:
        import banata_middleware.adapters.werkzeug  # noqa: F401
        from banata_middleware.demo.wsgi import werkzeug_app  # noqa: F401
    except ImportError:
        return False
    return True


if _wsgi_available():
    def _werkzeug(auth: BanataAuth) -> Any:
        from banata_middleware.demo.wsgi import werkzeug_app

        return werkzeug_app(auth)

    ADAPTERS["wsgi"] = _werkzeug


_TEMPLATE_DIR: str | None = None


def embedded_records(directory: str) -> RecordStore:
    """What ``RecordStore.embedded(directory/records.db)`` gives, a fresh SQLite file at the newest
    revision, without running every migration again for each of the suite's ~900 memory stacks
    (~0.15 s each): they run once per process into a template file, copied here. The migrations
    themselves are tested in tests/records/test_records_migrations.py."""
    global _TEMPLATE_DIR
    if _TEMPLATE_DIR is None:
        made = tempfile.mkdtemp(prefix="banata-records-template-")
        atexit.register(shutil.rmtree, made, True)
        RecordStore.embedded(os.path.join(made, "records.db")).dispose()  # the last close checkpoints the WAL
        _TEMPLATE_DIR = made
    path = os.path.join(directory, "records.db")
    shutil.copyfile(os.path.join(_TEMPLATE_DIR, "records.db"), path)
    return RecordStore(f"sqlite:///{path}")


class SharedLoop:
    """One event loop (an anyio blocking portal) for every ASGI stack of the session, as a server
    has one per worker: the session's record store then keeps its async engine, its pooled
    connections and its compiled statements from test to test instead of making them again in a
    new loop for each stack. ``close`` disposes of the engines it kept, then stops the loop."""

    def __init__(self, portal: BlockingPortal) -> None:
        self.portal = portal
        self.records: list[RecordStore] = []

    def keep(self, records: RecordStore) -> None:
        if all(r is not records for r in self.records):
            self.records.append(records)

    def close(self) -> None:
        for records in self.records:
            self.portal.call(records.adispose)


def make_stack(adapter: str, store_kind: str, clock: FrozenClock, redis_server: RedisServer | None,
               exits: ExitStack, database_url: str | None = None, *, loop: SharedLoop | None = None,
               records: RecordStore | None = None, **overrides: Any) -> Stack:
    """A stack on memory + an embedded SQLite file of its own, or on ``redis_server`` + the
    PostgreSQL database at ``database_url`` (the ``database_url`` fixture: emptied per test).
    ``records``: the session's store for that database (``PostgresDatabase.records``), shared
    instead of a store of the stack's own; ``loop``: the session's loop for an ASGI stack, instead
    of one of its own (needed to share ``records`` with an ASGI stack: its async engine is the loop's)."""
    overrides.setdefault("password_hashing", PasswordHashing(n=2**8))
    overrides.setdefault("secret", SECRET)
    verify_password = overrides.pop("verify_password", None)  # BanataAuth's, for apps with their own users
    metrics = overrides.pop("metrics", None)  # BanataAuth's too: a banata_middleware.metrics.Metrics
    tracing = overrides.pop("tracing", None)  # and a banata_middleware.tracing.Tracing
    notifier = overrides.pop("notifier", None)  # and a delivery.Notifier (the mfa_outbox fixture),
    delivery = overrides.pop("delivery", None)  # with its DeliveryPolicy
    config = demo_config(site_url=SITE, clock=clock, **overrides)
    if store_kind == "redis":
        assert redis_server is not None
        timeout = float(os.environ.get("BANATA_TEST_REDIS_TIMEOUT", "1"))
        store: Any = RedisStore.from_url(redis_server.url, timeout=timeout)
        assert database_url is not None, "a Redis stack needs the database_url fixture"
        if records is None or (adapter == "asgi" and loop is None):
            records = RecordStore(database_url)  # the session's database, migrated once
            exits.callback(records.dispose)
        else:
            assert records.url.database == make_url(database_url).database, "records of another database"
    else:
        store = MemoryStore(clock)
        records = embedded_records(exits.enter_context(tempfile.TemporaryDirectory()))
        exits.callback(records.dispose)
    auth = BanataAuth(config, store=store, records=records, verify_password=verify_password, metrics=metrics,
                      tracing=tracing, notifier=notifier, delivery=delivery)
    exits.callback(auth.close)  # the delivery thread, if any (before the record store is disposed)
    app = ADAPTERS[adapter](auth)
    if adapter == "asgi":
        if loop is None:
            portal = exits.enter_context(start_blocking_portal())
            # The async engine lives in the portal's event loop: close its connections before the loop ends.
            exits.callback(portal.call, records.adispose)
        else:
            portal = loop.portal
            if store_kind == "redis":
                exits.callback(portal.call, store.aclose)  # this stack's connections; the loop goes on
                loop.keep(records)
            else:
                exits.callback(portal.call, records.adispose)

        def factory(ip: str) -> httpx.BaseTransport:
            return SyncASGITransport(app, portal, (ip, 50000))
    else:

        def factory(ip: str) -> httpx.BaseTransport:
            return httpx.WSGITransport(app=app, remote_addr=ip)
    return Stack(adapter, store_kind, auth, app, clock, factory, redis_server)


def totp_secret(stack: Stack, uid: str) -> str:
    """The stored (encrypted) secret of the user's confirmed TOTP factor, read from the record store."""
    from sqlalchemy import select

    t = stack.auth.records.schema.totp_factors
    with stack.auth.records.engine.connect() as conn:
        return str(conn.execute(select(t.c.secret).where(t.c.user_id == uid)).scalar_one())


def set_totp_secret(stack: Stack, uid: str, ciphertext: str) -> None:
    """Someone with write access to the record store replaces the user's stored secret."""
    from sqlalchemy import update

    t = stack.auth.records.schema.totp_factors
    with stack.auth.records.engine.begin() as conn:
        conn.execute(update(t).where(t.c.user_id == uid).values(secret=ciphertext))


class FailingStore:
    """A store that cannot be reached: every operation raises what RedisStore raises then."""

    in_process = True

    def execute(self, op: Op) -> Any:
        raise AuthError(503, "STORE_UNAVAILABLE", "the authentication store is unavailable; try again shortly")

    async def aexecute(self, op: Op) -> Any:
        return self.execute(op)


class PausingStore:
    """The stack's store, running ``before`` once just ahead of the first op of script ``name``: a
    request that was loaded and checked, overtaken by another one before it commits."""

    in_process = True
    fails_after = False  # FailAfter: that op then fails as an unreachable Redis does (503)

    def __init__(self, store: Any, name: str, before: Any) -> None:
        self.store, self.name, self.before = store, name, before

    def execute(self, op: Any) -> Any:
        if name_of(op) == self.name and self.before is not None:
            before, self.before = self.before, None
            before()
            if self.fails_after:
                raise AuthError(503, "STORE_UNAVAILABLE", "the authentication store is unavailable; try again shortly")
        return self.store.execute(op)


class FailAfter(PausingStore):
    """The stack's hot store: on the first op of script ``name``, runs ``before`` (another request
    overtaking this one), then fails as an unreachable Redis does (503)."""

    fails_after = True


class FailOn:
    """The stack's hot store, failing as an unreachable Redis does (503) on the first op of script
    ``name`` (on every one with ``always``: still down for the undo): the process or Redis gone
    between a record store write and its hot store half."""

    def __init__(self, store: Any, name: str, *, always: bool = False) -> None:
        self.store, self.name, self.always, self.failed = store, name, always, 0
        self.in_process = getattr(store, "in_process", False)

    def _check(self, op: Any) -> None:
        if name_of(op) == self.name and (self.always or not self.failed):
            self.failed += 1
            raise AuthError(503, "STORE_UNAVAILABLE", "the authentication store is unavailable; try again shortly")

    def execute(self, op: Any) -> Any:
        self._check(op)
        return self.store.execute(op)

    async def aexecute(self, op: Any) -> Any:
        self._check(op)
        return await self.store.aexecute(op)


def count_scrypt(stack: Stack) -> list[int]:
    """Counts every scrypt the app runs from now on (``[n]``, read after the requests)."""
    hasher = stack.auth.flows.hasher
    calls = [0]
    inner = hasher._scrypt

    def counting(*args: Any) -> bytes:
        calls[0] += 1
        return inner(*args)

    hasher._scrypt = counting  # type: ignore[method-assign]
    return calls


STACK_PARAMS = [(a, s) for a in ADAPTERS for s in ("memory", "redis")]


def request_of(api: Api, path: str, body: dict[str, Any]) -> Request:
    """The POST to an auth endpoint (``path`` under /api/auth) that ``api`` would send, for driving
    one flow by hand (``run_sync``) with a store that pauses, fails or dies at a chosen script."""
    cookie = "; ".join(f"{n}={v}" for n, v in api.http.cookies.items())
    return Request("POST", "/api/auth" + path, {"cookie": cookie, "origin": SITE, "content-type": "application/json"},
                   "127.0.0.1", {}, json.dumps(body).encode())


class Api:
    """A browser-like client: keeps cookies, sends the site's Origin, knows the auth paths."""

    def __init__(self, client: httpx.Client, stack: Stack) -> None:
        self.http = client
        self.stack = stack
        self.device: VirtualAuthenticator | None = None
        self.backup_codes: list[str] = []

    def post(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post(path, json=json, **kw)

    def auth(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.http.post("/api/auth" + path, json=json, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def sign_up(self, email: str, password: str = PASSWORD, name: str = "Test User") -> httpx.Response:
        r = self.auth("/sign-up/email", {"email": email, "password": password, "name": name})
        assert r.status_code == 200, r.text
        return r

    def sign_in(self, email: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
        return self.auth("/sign-in/email", {"email": email, "password": password, **extra})

    def enable_2fa(self) -> VirtualAuthenticator:
        """enable + confirm with the virtual authenticator (the phone app reading the QR code)."""
        r = self.auth("/two-factor/enable", {"password": PASSWORD})
        assert r.status_code == 200, r.text
        self.backup_codes = r.json()["backupCodes"]
        self.device = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=self.stack.clock)
        r = self.auth("/two-factor/verify-totp", {"code": self.device.code()})
        assert r.status_code == 200, r.text
        return self.device

    def code(self, steps: int = 0) -> str:
        assert self.device is not None
        return self.device.code(steps=steps)

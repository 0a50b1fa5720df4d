"""``RecordStore``: runs record operations in one transaction each, on a sync or an async engine.

The sync engine serves WSGI and admin commands, the async engine ASGI; both run the very same
statements, built once by the operation (see ``ops``). Any database failure (refused connection,
timeout, lost server, missing table) becomes ``AuthError(503, STORE_UNAVAILABLE)``: the middleware
fails closed and the transaction is rolled back, so nothing is half-written.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ...errors import AuthError
from . import migrate
from .ops import RecordOp, SqlGen, Statement
from .schema import Schema

__all__ = ["RecordStore", "SchemaOutOfDate"]

R = TypeVar("R")
log = logging.getLogger("banata_middleware.records")

_SYNC_DRIVER = {"sqlite": "pysqlite", "postgresql": "psycopg", "mysql": "pymysql", "mariadb": "pymysql"}
_ASYNC_DRIVER = {"sqlite": "aiosqlite", "postgresql": "psycopg", "mysql": "asyncmy", "mariadb": "asyncmy"}


class SchemaOutOfDate(RuntimeError):
    """The database schema is not at the revision this version of the library needs."""


def _unavailable(exc: BaseException) -> AuthError:
    # The class names only: a SQLAlchemy message carries the statement's parameters (hashes, ciphertexts).
    cause = getattr(exc, "orig", None)
    log.warning("record store unavailable: %s%s", type(exc).__name__, f" ({type(cause).__name__})" if cause else "")
    return AuthError(503, "STORE_UNAVAILABLE", "the authentication store is unavailable; try again shortly")


#: A transaction the server chose as a deadlock victim was rolled back whole, so the operation runs
#: again from its first statement (its decision is re-made, never replayed).
_DEADLOCK_RETRIES = 3


def _is_deadlock(exc: BaseException) -> bool:
    cause = getattr(exc, "orig", None)
    if getattr(cause, "sqlstate", None) in ("40P01", "40001"):  # PostgreSQL: deadlock, serialization failure
        return True
    args: tuple[Any, ...] = getattr(cause, "args", ())
    return bool(args) and args[0] == 1213  # MySQL/MariaDB ER_LOCK_DEADLOCK


class _Retry:
    """``_settle``'s answer for a deadlock victim: run the operation again."""


_RETRY = _Retry()


def _settle(op: RecordOp[R], exc: Exception, attempt: int) -> R | _Retry | AuthError:
    """What a failed attempt of ``op`` gives, for both engines: its conflict answer (a unique index
    said no), ``_RETRY`` to run it again (a deadlock victim, up to ``_DEADLOCK_RETRIES``), or the
    503 to raise. The caller raises it AFTER its ``except`` block: raised inside, the 503 would
    carry the SQLAlchemy error as ``__context__`` (even ``from None`` only hides it from the
    traceback), and that error's message quotes the statement's parameters (password hashes,
    ciphertexts, backup-code hashes) to whatever the host logs or reports (review finding R4-6)."""
    if isinstance(exc, IntegrityError):
        if op.on_conflict is not None:
            return op.on_conflict  # type: ignore[no-any-return]
    elif attempt < _DEADLOCK_RETRIES and _is_deadlock(exc):
        return _RETRY
    return _unavailable(exc)


def _urls(url: str | URL) -> tuple[URL, URL]:
    """The sync and async URLs for one database (``postgres://`` and bare dialects included)."""
    u = make_url(url)
    backend = {"postgres": "postgresql"}.get(u.get_backend_name(), u.get_backend_name())
    if backend not in _SYNC_DRIVER:
        raise ValueError(f"unsupported database {backend!r}: use sqlite, postgresql, mysql or mariadb")
    if backend == "sqlite" and (not u.database or u.database == ":memory:"):
        raise ValueError("a SQLite record store needs a file (sqlite:///path/records.db); an in-memory "
                         "database would vanish with its connection")
    return (u.set(drivername=f"{backend}+{_SYNC_DRIVER[backend]}"),
            u.set(drivername=f"{backend}+{_ASYNC_DRIVER[backend]}"))


def _engine_args(url: URL, connect_timeout: float, busy_timeout_ms: int) -> dict[str, Any]:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": busy_timeout_ms / 1000, "check_same_thread": False}}
    # Servers: a bounded connect, and connections recycled before a server or proxy idles them out.
    # No pre-ping: it would add a round trip to every operation; a dead pooled connection fails one
    # operation (503) and SQLAlchemy then invalidates the pool.
    return {"connect_args": {"connect_timeout": max(1, int(connect_timeout))}, "pool_recycle": 1800}


#: One lock per SQLite file (by its real path), shared by every RecordStore of this process on it.
_SQLITE_WRITE_TURNS: dict[str, threading.Lock] = {}
_SQLITE_WRITE_TURNS_LOCK = threading.Lock()


def _sqlite_write_turn(path: str) -> threading.Lock:
    """SQLite has one writer at a time. This process's writers take their turn here and are woken
    the moment the writer before them commits; left to SQLite's busy handler they would poll,
    sleeping 1, 2, 5 ... up to 100 ms between tries, and under 8 concurrent sign-ins a verify-totp's
    p99 was 30 times its p50 (benchmarks/RESULTS.md). Another process on the same file still meets
    the busy timeout. Looked up at every write (by the file's real path), so that a forked child
    finds new locks (below), not copies held for ever by the parent's writers of the moment."""
    turn = _SQLITE_WRITE_TURNS.get(path)
    if turn is None:
        with _SQLITE_WRITE_TURNS_LOCK:
            turn = _SQLITE_WRITE_TURNS.setdefault(path, threading.Lock())
    return turn


def _new_turns_after_fork() -> None:
    global _SQLITE_WRITE_TURNS_LOCK
    _SQLITE_WRITE_TURNS_LOCK = threading.Lock()
    _SQLITE_WRITE_TURNS.clear()


if hasattr(os, "register_at_fork"):  # POSIX; Windows has no fork
    os.register_at_fork(after_in_child=_new_turns_after_fork)


def _sqlite_transactions(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL (readers never wait for the writer), a busy timeout, and explicit BEGINs: a writing op
    takes the write lock up front (BEGIN IMMEDIATE) so it waits its turn instead of failing with
    SQLITE_BUSY when it upgrades a read snapshot another writer made stale."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver's own implicit BEGIN off; we emit ours
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("banata_writes") else "BEGIN")


def _run_sync(gen: SqlGen[R], conn: Connection) -> R:
    try:
        statement = next(gen)
        while True:
            statement = gen.send(conn.execute(*statement) if isinstance(statement, tuple)
                                 else conn.execute(statement))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class RecordStore:
    """The durable store. ``RecordStore(url)`` for PostgreSQL/MariaDB/MySQL/SQLite (schema managed
    with ``banata-mfa db upgrade``; call ``check_schema()`` at start-up), ``RecordStore.embedded(path)``
    for a SQLite file that creates and upgrades its own schema."""

    def __init__(self, url: str | URL, *, prefix: str = "banata_", connect_timeout: float = 5.0,
                 busy_timeout_ms: int = 5000, **engine_args: Any) -> None:
        if busy_timeout_ms < 0:
            raise ValueError("busy_timeout_ms must be 0 or more (milliseconds a writer waits for the database)")
        self.url, self.async_url = _urls(url)
        self.backend = self.url.get_backend_name()
        self._busy_timeout_ms = busy_timeout_ms
        self._engine_args = {**_engine_args(self.url, connect_timeout, busy_timeout_ms), **engine_args}
        self.engine = create_engine(self.url, **self._engine_args)
        self.schema = Schema(prefix, self.engine.dialect.name)
        self._sqlite = self.backend == "sqlite"
        if self._sqlite:
            _sqlite_transactions(self.engine, busy_timeout_ms)
        #: The SQLite file whose write turn this store's writers take (``_sqlite_write_turn``).
        self._turn_path = os.path.realpath(self.url.database or "") if self._sqlite else None
        self._async_engine: AsyncEngine | None = None

    @classmethod
    def embedded(cls, path: str | os.PathLike[str], *, prefix: str = "banata_") -> RecordStore:
        """A SQLite file (created if missing) whose schema is brought to the newest revision now."""
        store = cls(URL.create("sqlite", database=os.fspath(path)), prefix=prefix)
        store.upgrade()
        return store

    @property
    def async_engine(self) -> AsyncEngine:
        """Created on first use, inside the event loop that will use it."""
        if self._async_engine is None:
            engine = create_async_engine(self.async_url, **self._engine_args)
            if self._sqlite:
                _sqlite_transactions(engine.sync_engine, self._busy_timeout_ms)
            self._async_engine = engine
        return self._async_engine

    # -- running operations ------------------------------------------------------------------
    def execute(self, op: RecordOp[R]) -> R:
        """Run ``op`` in one transaction on the sync engine."""
        return self._execute(op)

    def _execute(self, op: RecordOp[R]) -> R:
        # aexecute's SQLite path runs this too: one operation is one call of execute or aexecute,
        # never both (what wraps either, to time or count operations, sees each once).
        if not op.writes or self._turn_path is None:
            return self._attempts(op)
        turn = _sqlite_write_turn(self._turn_path)
        # As long as SQLite's own busy timeout, after which a writer gives up (503) likewise.
        if not turn.acquire(timeout=self._busy_timeout_ms / 1000):
            raise _unavailable(TimeoutError("waited the busy timeout for this process's SQLite writer"))
        try:
            return self._attempts(op)
        finally:
            turn.release()

    def _attempts(self, op: RecordOp[R]) -> R:
        for attempt in range(_DEADLOCK_RETRIES + 1):
            try:
                with self.engine.connect() as conn:
                    if op.writes:
                        conn.execution_options(banata_writes=True)
                    with conn.begin():
                        return _run_sync(op.run(self.schema), conn)
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                settled = _settle(op, exc, attempt)
            if isinstance(settled, AuthError):
                raise settled
            if not isinstance(settled, _Retry):
                return settled
        raise AssertionError("unreachable")

    async def aexecute(self, op: RecordOp[R]) -> R:
        """Run ``op`` in one transaction on the async engine (the same statements as ``execute``).
        SQLite: ``execute`` in a worker thread instead. aiosqlite hands every step (BEGIN, each
        statement, each fetch, COMMIT) to its connection's thread and back; one hop for the whole
        transaction costs less than half the CPU (measured side by side: LoadUser 1032 -> 402 µs,
        AcceptTotpStep 2157 -> 901 µs), and the transaction is the same."""
        if self._sqlite:
            return await anyio.to_thread.run_sync(self._execute, op)
        for attempt in range(_DEADLOCK_RETRIES + 1):
            try:
                async with self.async_engine.connect() as conn:
                    if op.writes:
                        await conn.execution_options(banata_writes=True)
                    async with conn.begin():
                        gen = op.run(self.schema)
                        try:
                            statement: Statement = next(gen)
                            while True:
                                statement = gen.send(await (conn.execute(*statement) if isinstance(statement, tuple)
                                                            else conn.execute(statement)))
                        except StopIteration as done:
                            return done.value  # type: ignore[no-any-return]
            except (SQLAlchemyError, OSError, TimeoutError) as exc:
                settled = _settle(op, exc, attempt)
            if isinstance(settled, AuthError):
                raise settled
            if not isinstance(settled, _Retry):
                return settled
        raise AssertionError("unreachable")

    # -- schema ------------------------------------------------------------------------------
    def upgrade(self, revision: str = "head") -> None:
        """Apply migrations (what ``banata-mfa db upgrade`` does)."""
        migrate.upgrade(self.engine, self.schema, revision)

    def current_revision(self) -> str | None:
        return migrate.current(self.engine, self.schema)

    def check_schema(self) -> None:
        """Refuse to start on a schema that is missing or behind (or ahead of) this library."""
        failure: AuthError | None = None
        try:
            current = self.current_revision()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            failure = _unavailable(exc)
        if failure is not None:  # raised outside the except block: no SQLAlchemy error as its context
            raise failure
        head = migrate.head()
        if current != head:
            where = "has no banata tables yet" if current is None else f"is at revision {current}"
            raise SchemaOutOfDate(
                f"the record store's database {where}; this version needs revision {head}. "
                f"Run: banata-mfa db upgrade --database-url URL"
                + (f" --table-prefix {self.schema.prefix}" if self.schema.prefix != "banata_" else ""))

    # -- lifecycle ---------------------------------------------------------------------------
    def dispose(self) -> None:
        self.engine.dispose()

    async def adispose(self) -> None:
        """Close the async engine's connections (before its event loop ends)."""
        if self._async_engine is not None:
            engine, self._async_engine = self._async_engine, None
            await engine.dispose()

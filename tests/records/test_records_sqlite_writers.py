"""SQLite's writers in one process take turns on a lock of the process (``_sqlite_write_turn``)
instead of polling SQLite's busy handler, which sleeps up to 100 ms between tries and made a
verify-totp's p99 thirty times its p50. The turn is the file's, whatever store or spelling of the
path reaches it; a writer that waits past the busy timeout fails closed (503), as SQLite's own
timeout would; readers never wait for it (WAL)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest
from sqlalchemy import event

from banata_middleware.errors import AuthError
from banata_middleware.stores.records import LoadUser, RecordStore, RevokeSessions
from banata_middleware.stores.records.store import _sqlite_write_turn


def test_every_store_on_one_file_shares_its_turn(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "records.db")
    first = RecordStore.embedded(path)
    os.makedirs(os.path.join(tmp_path, "sub"))
    again = RecordStore(f"sqlite:///{os.path.join(tmp_path, 'sub', '..', 'records.db')}")
    other = RecordStore.embedded(os.path.join(tmp_path, "other.db"))
    try:
        assert first._turn_path is not None and first._turn_path == again._turn_path != other._turn_path
        assert _sqlite_write_turn(first._turn_path) is _sqlite_write_turn(first._turn_path)
    finally:
        for store in (first, again, other):
            store.dispose()


def test_a_writer_waits_its_turn_then_fails_closed_and_readers_never_wait(tmp_path: os.PathLike[str]) -> None:
    store = RecordStore(f"sqlite:///{os.path.join(tmp_path, 'records.db')}", busy_timeout_ms=300)
    store.upgrade()
    assert store._turn_path is not None
    turn = _sqlite_write_turn(store._turn_path)
    try:
        store.execute(RevokeSessions("u", 1))
        assert turn.acquire(timeout=1)  # another writer of this process holds the file
        try:
            began = time.monotonic()
            with pytest.raises(AuthError) as refused:
                store.execute(RevokeSessions("u", 2))
            assert refused.value.status == 503 and time.monotonic() - began >= 0.29
            with pytest.raises(AuthError) as refused_async:
                asyncio.run(store.aexecute(RevokeSessions("u", 3)))
            assert refused_async.value.status == 503
            began = time.monotonic()
            assert store.execute(LoadUser("u")).generation == 1  # a read does not wait
            assert time.monotonic() - began < 0.25
        finally:
            turn.release()
        assert store.execute(RevokeSessions("u", 4)) == 2  # nothing of the refused writes was written
    finally:
        store.dispose()


def test_racing_writers_all_commit_without_sqlites_busy_handler(tmp_path: os.PathLike[str]) -> None:
    """8 threads x 25 writes, with SQLite's own busy timeout set to 0 on every connection: a writer
    that met the write lock held would fail at once (503). All commit: the turn alone orders them."""
    store = RecordStore.embedded(os.path.join(tmp_path, "records.db"))

    @event.listens_for(store.engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:  # runs after the store's own listener
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    store.engine.dispose()  # connections made from here on get the listener
    failures: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        start.wait()
        for i in range(25):
            try:
                store.execute(RevokeSessions(f"user-{n}", i + 1))
            except BaseException as exc:  # reported below, with the thread that met it gone
                failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert [store.execute(LoadUser(f"user-{n}")).generation for n in range(8)] == [25] * 8
    finally:
        store.dispose()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX")
def test_a_child_forked_while_a_writer_held_the_turn_can_write(tmp_path: os.PathLike[str]) -> None:
    store = RecordStore.embedded(os.path.join(tmp_path, "records.db"))
    assert store._turn_path is not None
    turn = _sqlite_write_turn(store._turn_path)
    store.engine.dispose()  # no pooled connection crosses the fork
    assert turn.acquire(timeout=1)  # a writer of the parent's, mid-transaction at the fork
    try:
        pid = os.fork()
        if pid == 0:  # the child: its copy of the held lock is replaced by a new one
            code = 1
            try:
                store.engine.dispose(close=False)
                code = 0 if store.execute(RevokeSessions("child", 1)) == 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        turn.release()
        store.dispose()


def test_a_negative_busy_timeout_is_refused(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        RecordStore(f"sqlite:///{os.path.join(tmp_path, 'records.db')}", busy_timeout_ms=-1)

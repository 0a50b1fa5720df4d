"""How one flow serves both WSGI and ASGI: flows are generators that yield effects.

A flow never touches I/O. It yields an ``Op`` (one atomic operation on the hot store, a typed value
declared in ``stores.hot_ops``: a Lua script in Redis, its twin in memory), a ``Rec`` (one
transaction on the record store: a typed ``RecordOp`` run in SQL) or a ``Compute`` (CPU-heavy work
such as password hashing), receives the result, and finally returns its answer. A ``Call`` runs
the app's own code on the request's path (an OTP sender). ``run_sync`` drives it with blocking
stores, ``run_async`` with asyncio ones; there is no second copy of any flow. A store failure is
thrown *into* the flow as an ``AuthError`` so the flow's own error handling renders it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Generator
from time import perf_counter
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import anyio.to_thread

from .errors import AuthError
from .stores.hot_ops import OPS, HotOp

if TYPE_CHECKING:
    from .metrics import Metrics
    from .stores.records import RecordOp
    from .tracing import Tracing

__all__ = ["Call", "Compute", "Flow", "MeasuredStore", "Op", "OpStore", "Rec", "RecordRunner", "run_async", "run_sync"]

T = TypeVar("T")


#: One hot-store operation (``stores.hot_ops``: ``Guard(...)``, ``ChallengeAnswer(...)``...): run as
#: its Lua script in Redis, its twin in memory; its typed reply is sent back.
#: Its repr names its keys, never its arguments (hot_ops: a secret's ciphertext, code hashes).
Op = HotOp


class Rec(NamedTuple):
    """Run the record operation ``op`` (``stores.records``) in one SQL transaction; its typed reply
    is sent back. Durable records (accounts, factors, backup codes, passkeys, the permanent lock,
    the audit trail) are only ever read and written this way."""

    op: RecordOp[Any]


class Compute(NamedTuple):
    """CPU-bound work the async driver moves off the event loop (only password hashing uses it)."""

    fn: Callable[[], Any]


class Call(NamedTuple):
    """The app's own code, on the request's path: ``fn()``, which must not raise (wrap it). A plain
    function is called directly under WSGI and in a worker thread under ASGI (it may block on a
    network); with ``coroutine`` it is a coroutine function, awaited on the loop under ASGI and run
    to completion on a loop of its own under WSGI (only apps that chose an async sender pay that)."""

    fn: Callable[[], Any]
    coroutine: bool = False


Effect = Op | Rec | Compute | Call
Flow = Generator[Effect, Any, T]


class OpStore(Protocol):
    #: True for a store without I/O: the async driver then calls ``execute`` directly.
    in_process: bool

    def execute(self, op: Op) -> Any: ...

    async def aexecute(self, op: Op) -> Any: ...


class RecordRunner(Protocol):
    """What runs ``Rec`` effects: ``stores.records.RecordStore`` (sync engine for WSGI and admin,
    async engine for ASGI)."""

    def execute(self, op: RecordOp[T]) -> T: ...

    async def aexecute(self, op: RecordOp[T]) -> T: ...


def _no_records(effect: Rec) -> AuthError:
    # A flow asked for a durable record with no record store configured: fail closed, loudly.
    return AuthError(503, "STORE_UNAVAILABLE", f"no record store to run {type(effect.op).__name__}")


def run_sync(flow: Flow[T], store: OpStore, records: RecordRunner | None = None) -> T:
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            kind = type(effect)
            if kind is Rec:
                if records is None:
                    raise _no_records(effect)  # type: ignore[arg-type]
                result = records.execute(effect.op)  # type: ignore[union-attr]
            elif kind is Call and effect.coroutine:  # type: ignore[union-attr]
                result = _run_coroutine(effect.fn)  # type: ignore[union-attr]
            elif kind is Compute or kind is Call:
                result = effect.fn()  # type: ignore[union-attr]
            else:
                result = store.execute(effect)  # type: ignore[arg-type]
        except AuthError as exc:
            error = exc


async def run_async(flow: Flow[T], store: OpStore, records: RecordRunner | None = None) -> T:
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            kind = type(effect)
            if kind is Rec:
                if records is None:
                    raise _no_records(effect)  # type: ignore[arg-type]
                result = await records.aexecute(effect.op)  # type: ignore[union-attr]
            elif kind is Call and effect.coroutine:  # type: ignore[union-attr]
                result = await effect.fn()  # type: ignore[union-attr]
            elif kind is Compute or kind is Call:
                result = await anyio.to_thread.run_sync(effect.fn)  # type: ignore[union-attr]
            else:
                result = store.execute(effect) if store.in_process else await store.aexecute(effect)  # type: ignore[arg-type]
        except AuthError as exc:
            error = exc


def _run_coroutine(fn: Callable[[], Any]) -> Any:
    """A coroutine function's result from sync code: on a new loop here, or, when this thread
    already runs one (a sync driver called from async code), on a new loop in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(fn())
    box: list[Any] = []
    worker = threading.Thread(target=lambda: box.append(asyncio.run(fn())), name="banata-call")
    worker.start()
    worker.join()
    return box[0] if box else None


class MeasuredStore:
    """A store (``Op``s, named by their script) or a record store (``RecordOp``s, named by class: SQL ops
    are ``sql.<ClassName>``) with each operation timed into ``metrics``, each failure (the store's
    ``AuthError``, a 503) counted, and each wrapped in a ``tracing`` span. Only made when metrics or
    tracing are on: the drivers above stay as they are, and with both off nothing on the store path
    changes. Names come from the code, never from a request: the labels stay bounded."""

    def __init__(self, store: Any, metrics: Metrics | None, tracing: Tracing | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.tracing = tracing
        self.in_process = getattr(store, "in_process", False)

    @staticmethod
    def _name(op: Any) -> str:
        spec = OPS.get(type(op))
        return spec.name if spec is not None else f"sql.{type(op).__name__}"

    def _done(self, name: str, start: float, failed: bool) -> None:
        if self.metrics is not None:
            self.metrics.observe_store(name, perf_counter() - start, failed)

    def execute(self, op: Any) -> Any:
        name = self._name(op)
        if self.tracing is None:
            return self._execute(op, name)
        with self.tracing.store(name):
            return self._execute(op, name)

    def _execute(self, op: Any, name: str) -> Any:
        start = perf_counter()
        try:
            result = self.store.execute(op)
        except AuthError:
            self._done(name, start, True)
            raise
        self._done(name, start, False)
        return result

    async def aexecute(self, op: Any) -> Any:
        name = self._name(op)
        if self.tracing is None:
            return await self._aexecute(op, name)
        with self.tracing.store(name):
            return await self._aexecute(op, name)

    async def _aexecute(self, op: Any, name: str) -> Any:
        start = perf_counter()
        try:
            result = await self.store.aexecute(op)
        except AuthError:
            self._done(name, start, True)
            raise
        self._done(name, start, False)
        return result

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

__all__ = ["Call", "Compute", "Flow", "MeasuredStore", "Meter", "Op", "OpStore", "Rec", "RecordRunner", "run_async",
           "run_sync"]

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


class Meter(Protocol):
    """Where the drivers report a request's time and its store operations' when metrics are on and
    tracing off (``metrics.Metrics``): timed in the driver itself, reported in one call at the end,
    instead of a measuring flow around the request and a measuring store around each operation."""

    def observe_request(self, route: str, result: Any, seconds: float,
                        stores: list[tuple[type[Any], float]] | None) -> None: ...

    def observe_store_failure(self, kind: type[Any], seconds: float) -> None: ...

    def observe_stores(self, stores: list[tuple[type[Any], float]]) -> None: ...


Timings = list[tuple[type[Any], float]]


def run_sync(flow: Flow[T], store: OpStore, records: RecordRunner | None = None, meter: Meter | None = None,
             route: str = "", start: float = 0.0, timings: Timings | None = None) -> T:
    """Drives ``flow`` to its answer with blocking stores. With ``meter`` (metrics on, tracing off),
    each store and record operation is timed here and the request, started at ``start`` (a
    ``perf_counter``), is reported under ``route`` with them once it is answered (``timings``: the
    request's operations run before this flow, by the caller)."""
    result: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = flow.send(result) if error is None else flow.throw(error)
            except StopIteration as done:
                if meter is not None:
                    meter.observe_request(route, done.value, perf_counter() - start, timings)
                return done.value  # type: ignore[no-any-return]
            result, error = None, None
            kind = type(effect)
            if kind is Compute or kind is Call:
                try:
                    coroutine = kind is Call and effect.coroutine  # type: ignore[union-attr]
                    result = _run_coroutine(effect.fn) if coroutine else effect.fn()  # type: ignore[union-attr]
                except AuthError as exc:
                    error = exc
                continue
            op: Any = effect.op if kind is Rec else effect  # type: ignore[union-attr]
            began = perf_counter() if meter is not None else 0.0
            try:
                if kind is Rec:
                    if records is None:
                        raise _no_records(effect)  # type: ignore[arg-type]
                    result = records.execute(op)
                else:
                    result = store.execute(op)
            except AuthError as exc:
                error = exc
            if meter is not None:
                if error is not None:
                    meter.observe_store_failure(type(op), perf_counter() - began)
                elif timings is None:
                    timings = [(type(op), perf_counter() - began)]
                else:
                    timings.append((type(op), perf_counter() - began))
    except BaseException:
        if timings is not None and meter is not None:  # a bug's exception: its operations still count
            meter.observe_stores(timings)
        raise


async def run_async(flow: Flow[T], store: OpStore, records: RecordRunner | None = None, meter: Meter | None = None,
                    route: str = "", start: float = 0.0, timings: Timings | None = None) -> T:
    """``run_sync`` with asyncio stores."""
    result: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                effect = flow.send(result) if error is None else flow.throw(error)
            except StopIteration as done:
                if meter is not None:
                    meter.observe_request(route, done.value, perf_counter() - start, timings)
                return done.value  # type: ignore[no-any-return]
            result, error = None, None
            kind = type(effect)
            if kind is Compute or kind is Call:
                try:
                    if kind is Call and effect.coroutine:  # type: ignore[union-attr]
                        result = await effect.fn()  # type: ignore[union-attr]
                    else:
                        result = await anyio.to_thread.run_sync(effect.fn)  # type: ignore[union-attr]
                except AuthError as exc:
                    error = exc
                continue
            op: Any = effect.op if kind is Rec else effect  # type: ignore[union-attr]
            began = perf_counter() if meter is not None else 0.0
            try:
                if kind is Rec:
                    if records is None:
                        raise _no_records(effect)  # type: ignore[arg-type]
                    result = await records.aexecute(op)
                else:
                    result = store.execute(op) if store.in_process else await store.aexecute(op)
            except AuthError as exc:
                error = exc
            if meter is not None:
                if error is not None:
                    meter.observe_store_failure(type(op), perf_counter() - began)
                elif timings is None:
                    timings = [(type(op), perf_counter() - began)]
                else:
                    timings.append((type(op), perf_counter() - began))
    except BaseException:
        if timings is not None and meter is not None:
            meter.observe_stores(timings)
        raise


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
    tracing are on, and used for requests only with tracing on (with metrics alone the drivers time
    the operations themselves, ``Meter``; ``BanataAuth.run`` still uses it). With both off nothing on
    the store path changes. Names come from the code, never from a request: the labels stay bounded."""

    def __init__(self, store: Any, metrics: Metrics | None, tracing: Tracing | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.tracing = tracing
        self.in_process = getattr(store, "in_process", False)

    @staticmethod
    def _name(op: Any) -> str:
        spec = OPS.get(type(op))
        return spec.name if spec is not None else f"sql.{type(op).__name__}"

    def execute(self, op: Any) -> Any:
        if self.tracing is not None:
            with self.tracing.store(self._name(op)):
                return self._execute(op)
        # _execute inlined: with metrics alone (the usual case) this runs for every store operation.
        start = perf_counter()
        try:
            result = self.store.execute(op)
        except AuthError:
            self._done(op, start, True)
            raise
        self._done(op, start, False)
        return result

    def _execute(self, op: Any) -> Any:
        start = perf_counter()
        try:
            result = self.store.execute(op)
        except AuthError:
            self._done(op, start, True)
            raise
        self._done(op, start, False)
        return result

    async def aexecute(self, op: Any) -> Any:
        if self.tracing is None:
            return await self._aexecute(op)
        with self.tracing.store(self._name(op)):
            return await self._aexecute(op)

    async def _aexecute(self, op: Any) -> Any:
        start = perf_counter()
        try:
            result = await self.store.aexecute(op)
        except AuthError:
            self._done(op, start, True)
            raise
        self._done(op, start, False)
        return result

    def _done(self, op: Any, start: float, failed: bool) -> None:
        seconds = perf_counter() - start
        if self.metrics is not None:
            self.metrics.observe_store(self._name(op), seconds, failed)

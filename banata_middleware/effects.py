"""How one flow serves both WSGI and ASGI: flows are generators that yield effects.

A flow never touches I/O. It yields an ``Op`` (one atomic store operation, a Lua script in Redis)
or a ``Compute`` (CPU-heavy work such as password hashing), receives the result, and finally
returns its answer. ``run_sync`` drives it with a blocking store, ``run_async`` with an asyncio one;
there is no second copy of any flow. A store failure is thrown *into* the flow as an ``AuthError``
so the flow's own error handling renders it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from time import perf_counter
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import anyio.to_thread

from .errors import AuthError

if TYPE_CHECKING:
    from .metrics import Metrics
    from .tracing import Tracing

__all__ = ["Compute", "Flow", "MeasuredStore", "Op", "OpStore", "run_async", "run_sync"]

T = TypeVar("T")


class Op(NamedTuple):
    """Run the store script ``script`` on ``keys`` (all in one user's hash slot) with ``args``.

    A NamedTuple rather than a frozen dataclass: one is built per request, and it is cheaper."""

    script: str
    keys: tuple[str, ...]
    args: tuple[str | int, ...]


class Compute(NamedTuple):
    """CPU-bound work the async driver moves off the event loop (only password hashing uses it)."""

    fn: Callable[[], Any]


Effect = Op | Compute
Flow = Generator[Effect, Any, T]


class OpStore(Protocol):
    #: True for a store without I/O: the async driver then calls ``execute`` directly.
    in_process: bool

    def execute(self, op: Op) -> Any: ...

    async def aexecute(self, op: Op) -> Any: ...


def run_sync(flow: Flow[T], store: OpStore) -> T:
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            result = store.execute(effect) if type(effect) is Op else effect.fn()  # type: ignore[union-attr]
        except AuthError as exc:
            error = exc


async def run_async(flow: Flow[T], store: OpStore) -> T:
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.send(result) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        result, error = None, None
        try:
            if type(effect) is Op:
                result = store.execute(effect) if store.in_process else await store.aexecute(effect)
            else:
                result = await anyio.to_thread.run_sync(effect.fn)  # type: ignore[union-attr]
        except AuthError as exc:
            error = exc


class MeasuredStore:
    """``store`` with each operation timed into ``metrics`` (by script name), each failure (the
    store's ``AuthError``, a 503) counted, and each wrapped in a ``tracing`` span. Only made when
    metrics or tracing are on: the drivers above stay as they are, and with both off nothing on the
    store path changes."""

    def __init__(self, store: OpStore, metrics: Metrics | None, tracing: Tracing | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.tracing = tracing
        self.in_process = store.in_process

    def _done(self, op: Op, start: float, failed: bool) -> None:
        if self.metrics is not None:
            self.metrics.observe_store(op.script, perf_counter() - start, failed)

    def execute(self, op: Op) -> Any:
        if self.tracing is None:
            return self._execute(op)
        with self.tracing.store(op.script):
            return self._execute(op)

    def _execute(self, op: Op) -> Any:
        start = perf_counter()
        try:
            result = self.store.execute(op)
        except AuthError:
            self._done(op, start, True)
            raise
        self._done(op, start, False)
        return result

    async def aexecute(self, op: Op) -> Any:
        if self.tracing is None:
            return await self._aexecute(op)
        with self.tracing.store(op.script):
            return await self._aexecute(op)

    async def _aexecute(self, op: Op) -> Any:
        start = perf_counter()
        try:
            result = await self.store.aexecute(op)
        except AuthError:
            self._done(op, start, True)
            raise
        self._done(op, start, False)
        return result

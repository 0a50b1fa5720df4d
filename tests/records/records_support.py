"""Support for the storage conformance suite: one way to run an operation sequence on the sync or
the async engine (the throw-away databases come from ``harness.scratch_database``).

A sequence is written once, as a generator that yields record operations and receives their replies
(the same shape as the flows): ``run_sequence`` drives it with ``store.execute`` or inside one
event loop with ``await store.aexecute``.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Generator
from typing import Any

from banata_middleware.stores.records import RecordOp, RecordStore

BACKENDS = ("sqlite", "postgresql", "mariadb")
MODES = ("sync", "async")
Sequence = Generator[RecordOp[Any], Any, None]


def new_id(label: str = "u") -> str:
    return f"{label}-{secrets.token_hex(6)}"


def run_sequence(store: RecordStore, mode: str, sequence: Callable[[], Sequence]) -> None:
    """Drive ``sequence`` with the sync engine or (in one event loop) the async engine."""
    if mode == "sync":
        gen = sequence()
        try:
            op = next(gen)
            while True:
                op = gen.send(store.execute(op))
        except StopIteration:
            return

    async def drive() -> None:
        gen = sequence()
        try:
            op = next(gen)
            while True:
                op = gen.send(await store.aexecute(op))
        except StopIteration:
            return
        finally:
            await store.adispose()  # the async pool belongs to this event loop

    asyncio.run(drive())



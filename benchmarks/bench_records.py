"""The CPU cost of the record operations on a verification's path, in process, per engine.

    python benchmarks/bench_records.py                  # SQLite (a temporary file) and PostgreSQL
    python benchmarks/bench_records.py --setup sqlite   # SQLite only (no server needed)

For each backend and engine (sync: ``RecordStore.execute``; async: ``RecordStore.aexecute`` on one
event loop) it times ``LoadUser`` (the lookup every verification starts with), ``AcceptTotpStep``
(the replay guard's conditional update, the streak reset and an audit row, one write transaction)
and ``ConsumeBackupCode``, in interleaved rounds, and reports this process's CPU time per operation
(median of the rounds; the async engine's and aiosqlite's threads included) and the wall time.
PostgreSQL: a new database on 127.0.0.1:5432 (user postgres), dropped at the end. To compare two
commits, run this file from each checkout, one after the other, and compare the figures of runs
made close together: the machine's load moves them all.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


from banata_middleware.stores.records import (  # noqa: E402
    AcceptTotpStep,
    AuditEntry,
    ConsumeBackupCode,
    EnableTotp,
    LoadUser,
    RecordOp,
    RecordStore,
)
from benchmarks.bench_http import SetupError, postgres_database  # noqa: E402

SECRET = "c" * 80  # ciphertext-sized; never decrypted here
AUDIT = (AuditEntry("two_factor.verified", 1, "203.0.113.7", "Mozilla/5.0 bench", "sid", {"detail": "totp"}),)


class Ops:
    """A user with a confirmed TOTP factor and backup codes; each call makes the next operation."""

    def __init__(self, store: RecordStore, uid: str, codes: int) -> None:
        self.uid, self.step, self.code = uid, 10, 0
        # As the enable flow turns two-factor on: the app, confirmed by the code of ``step``, and the codes.
        store.execute(EnableTotp(uid, "totp", SECRET, "k1", 1, self.step, [f"h{i}" for i in range(1, codes + 1)],
                                 "k1", while_off=True))

    def load(self) -> RecordOp[Any]:
        return LoadUser(self.uid)

    def accept(self) -> RecordOp[Any]:
        self.step += 1
        return AcceptTotpStep(self.uid, "totp", SECRET, self.step, AUDIT)

    def consume(self) -> RecordOp[Any]:
        self.code += 1
        return ConsumeBackupCode(self.uid, [f"h{self.code}", f"x{self.code}"], AUDIT)


Make = Callable[[], RecordOp[Any]]


def _time(make: Make, execute: Callable[[RecordOp[Any]], Any], n: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        execute(make())
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def _atime(make: Make, aexecute: Callable[[RecordOp[Any]], Awaitable[Any]], n: int) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await aexecute(make())
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def bench(store: RecordStore, rounds: int, n: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    ops = Ops(store, f"bench-{time.time_ns()}", codes=2 * (rounds + 1) * n)  # every consume finds its code
    makers: dict[str, Make] = {"LoadUser": ops.load, "AcceptTotpStep": ops.accept, "ConsumeBackupCode": ops.consume}
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}

    async def run_async() -> None:
        try:
            for r in range(rounds + 1):  # round 0 warms up, not recorded
                for name, make in makers.items():
                    sync = _time(make, store.execute, n)
                    asynchronous = await _atime(make, store.aexecute, n)
                    if r:
                        samples.setdefault(("sync", name), []).append(sync)
                        samples.setdefault(("async", name), []).append(asynchronous)
        finally:
            await store.adispose()

    asyncio.run(run_async())
    return samples


def report(title: str, samples: dict[tuple[str, str], list[tuple[float, float]]]) -> None:
    print(f"\n{title}")
    print(f"  {'engine':<7}{'operation':<19}{'CPU µs/op':>10}{'wall µs/op':>12}")
    for (engine, name), values in sorted(samples.items()):
        cpu = statistics.median(c for c, _ in values)
        wall = statistics.median(w for _, w in values)
        print(f"  {engine:<7}{name:<19}{cpu:>10.0f}{wall:>12.0f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=100, help="operations per kind per engine per round")
    args = parser.parse_args(argv)
    if args.setup in ("sqlite", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            store = RecordStore.embedded(Path(tmp) / "records.db")
            try:
                report("SQLite (a file, WAL)", bench(store, args.rounds, args.ops))
            finally:
                store.dispose()
    if args.setup in ("postgresql", "all"):
        try:
            with postgres_database() as url:
                store = RecordStore(url)
                try:
                    report("PostgreSQL (127.0.0.1, psycopg 3)", bench(store, args.rounds, args.ops))
                finally:
                    store.dispose()
        except SetupError as exc:
            print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

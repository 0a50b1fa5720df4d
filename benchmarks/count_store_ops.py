"""Instructions per hot-store operation, on each side of the wire: what ``redis-server`` spends on the
guard's read, ``load``, the guard's last-use write and a bare GET, and what the Python client spends
(``RedisStore.execute``/``aexecute``, or redis-py's ``get`` for the GET), both counted by valgrind's
callgrind. The noise-free figures behind the HTTP benchmark's Redis column and its client share.

    python benchmarks/count_store_ops.py                          # this tree
    python benchmarks/count_store_ops.py --tree /path/to/other    # another checkout's store (compare)

Redis side: one ``redis-server`` under callgrind (``--hz 1``: its timer stays out of the count), the
operations sent ``--requests`` times each over one connection by the store itself, the counts zeroed
and dumped around each batch. Client side: each operation in its own Python process under callgrind,
counted only inside ``sys.call_tracing`` (the batch; set-up and warm-up left out), against a plain
``redis-server``. ``PYTHONHASHSEED=0``. A user hash and an aal 2 session like the benchmark's; the
guard's last use is never due here (``seen_every_ms`` an hour), except in the 'seen write' row,
which runs the write's script alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VALGRIND = ["valgrind", "--tool=callgrind", "--dump-instr=no"]
OPS = ("GET", "guard", "load", "seen write")
HOUR = 3_600_000


def _setup(url: str) -> tuple[Any, dict[str, Any]]:
    """The store at ``url``, a user with a session; the operations by name, as (sync, async) calls."""
    from banata_middleware.keys import Keys
    from banata_middleware.stores import RedisStore
    from banata_middleware.stores.hot_ops import Guard, Head, Load, SessionCreate

    k, now = Keys("banata"), 1_800_000_000_000
    store = RedisStore.from_url(url, timeout=30)
    head = Head(k.user("ann"), k.audit("ann"), now, "10.0.0.1", "Firefox", 1000, "ann")
    store.execute(SessionCreate(head, k.session("ann", "s1"), k.sessions("ann"), "s1", str(7 * 24 * HOUR), 2, now,
                                "1", "1", "pwd otp"))
    store.sync.hset(k.user("ann"), mapping={"tfa": "1", "rec": "1", "email": "ann@example.com", "name": "Ann",
                                            "created": str(now), "gen": "1", "sgen": "1", "codes_kid": "k1"})
    store.sync.set("bench:one", "x" * 200)
    guard = Guard(k.user("ann"), k.session("ann", "s1"), k.challenge("ann", "-"), now + 1000, "1", "0", HOUR, 0)
    load = Load(k.user("ann"), k.session("ann", "s1"), k.challenge("ann", "-"), k.pending_backup_codes("ann"),
                now + 1000, "1", "0")
    seen_args = (k.session("ann", "s1"), now + HOUR, 0, 0)  # always due: 'seen' is rewritten each time
    calls: dict[str, Any] = {
        "GET": (lambda: store.sync.get("bench:one"), lambda: store.aio.get("bench:one")),
        "guard": (lambda: store.execute(guard), lambda: store.aexecute(guard)),
        "load": (lambda: store.execute(load), lambda: store.aexecute(load)),
    }
    try:
        from banata_middleware.stores.redis import SEEN_SCRIPT, SEEN_SHA  # this branch's last-use write
    except ImportError:
        pass
    else:
        calls["seen write"] = (lambda: store._script(SEEN_SHA, SEEN_SCRIPT, 1, *seen_args),
                               lambda: store._ascript(SEEN_SHA, SEEN_SCRIPT, 1, *seen_args))
    return store, calls


def _client_child(url: str, op: str, kind: str, n: int) -> None:
    _, calls = _setup(url)
    sync, aio = calls[op]
    if kind == "sync":
        def batch(count: int) -> None:
            for _ in range(count):
                sync()

        batch(100)
        sys.call_tracing(batch, (n,))
        return

    async def abatch(count: int) -> None:
        for _ in range(count):
            await aio()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(abatch(100))
    sys.call_tracing(loop.run_until_complete, (abatch(n),))


def _started_redis(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    import redis

    proc = subprocess.Popen([*argv, "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--hz", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.1)
    client.close()
    return proc


def _dump(pid: int, out: Path) -> int:
    before = set(out.glob("cg.*"))
    subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True, check=True)
    deadline = time.monotonic() + 60
    while not (new := set(out.glob("cg.*")) - before):
        if time.monotonic() > deadline:
            raise RuntimeError("callgrind wrote no dump")
        time.sleep(0.1)
    time.sleep(0.2)
    total = 0
    for path in new:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total += int(line.split()[1])
                break
        path.unlink()
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_side(n: int) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="count-store-") as name:
        out = Path(name)
        proc = _started_redis([*VALGRIND, f"--callgrind-out-file={out}/cg.%p"], port)
        try:
            store, calls = _setup(f"redis://127.0.0.1:{port}/0")
            counts = {}
            for op, (sync, _) in calls.items():
                sync()  # the script loaded, the connection made
                subprocess.run(["callgrind_control", "--zero", str(proc.pid)], capture_output=True, check=True)
                for _ in range(n):
                    sync()
                counts[op] = _dump(proc.pid, out) / n
            store.close()
        finally:
            proc.terminate()
            proc.wait()
    return counts


def client_side(n: int, tree: Path) -> dict[tuple[str, str], float]:
    port = free_port()
    proc = _started_redis([], port)
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    counts = {}
    try:
        for op in OPS:
            for kind in ("async", "sync"):
                run = subprocess.run(
                    [*VALGRIND, "--callgrind-out-file=/dev/null", "--toggle-collect=_PyEval_CallTracing",
                     sys.executable, __file__, "--child", f"redis://127.0.0.1:{port}/0", op, kind, str(n)],
                    env=env, capture_output=True, text=True, check=False)
                found = re.search(r"Collected\s*:\s*(\d+)", run.stderr)
                if run.returncode == 0 and found:
                    counts[(op, kind)] = int(found.group(1)) / n
    finally:
        proc.terminate()
        proc.wait()
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="operations counted per row")
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose banata_middleware is counted")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, op, kind, n = args.child
        _client_child(url, op, kind, int(n))
        return 0
    tree = args.tree.resolve()
    sys.path.insert(0, str(tree))
    print(f"tree {tree}; {args.requests} operations per row; instructions per operation")
    client = client_side(args.requests, tree)
    server = redis_side(args.requests)
    print(f"  {'operation':<12}{'redis-server':>14}{'client, asyncio':>17}{'client, sync':>14}")
    for op in OPS:
        if op not in server:
            continue
        a, s = client.get((op, "async")), client.get((op, "sync"))
        print(f"  {op:<12}{server[op]:>14,.0f}{(f'{a:,.0f}' if a else '-'):>17}{(f'{s:,.0f}' if s else '-'):>14}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

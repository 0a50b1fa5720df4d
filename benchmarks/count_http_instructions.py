"""Instructions per request over HTTP, counted in the server (and in Redis): the noise-free twin of
``bench_http.py``'s ratios.

On a shared 2-core machine the timed benchmark measures the scheduler as much as the server (see
its "srv CPU wait" column). Here the same server (``benchmarks/http_apps.py``, uvicorn or waitress)
runs under valgrind's callgrind, this script sends each variant's requests one at a time over one
keep-alive connection, and the server's instructions are counted per variant batch
(``callgrind_control --zero`` before, ``--dump`` after): everything the server process runs for a
request (the HTTP server, the framework, the middleware, redis-py or the memory store) and nothing
else. With PostgreSQL + Redis, ``redis-server`` runs under callgrind too and its instructions per
request are given beside them. Counts move by well under 1 % between runs of the same code.

    python benchmarks/count_http_instructions.py                       # both setups, ASGI and WSGI
    python benchmarks/count_http_instructions.py --setup pg-redis --adapter asgi --requests 300

Slow (valgrind runs Python about 50 times slower): a few minutes per configuration. The ratio printed
is bare / variant in server instructions: the share of the bare endpoint's throughput the variant
would reach if the server's CPU were the only limit and every instruction cost the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_http as bench  # noqa: E402

VARIANTS = ("bare 1-GET", "pass-through", "get-session", "demo /api/me")
VALGRIND = ["valgrind", "--tool=callgrind", "--dump-instr=no", "--collect-atstart=yes"]


def dumped_instructions(pid: int, out_dir: Path) -> int:
    """Dump ``pid``'s counts since the last zeroing and return their total (Ir)."""
    before = set(out_dir.glob(f"cg.{pid}*"))
    subprocess.run(["callgrind_control", "--dump", str(pid)], capture_output=True, check=True)
    deadline = time.monotonic() + 60
    while not (new := set(out_dir.glob(f"cg.{pid}*")) - before):
        if time.monotonic() > deadline:
            raise RuntimeError(f"callgrind wrote no dump for {pid}")
        time.sleep(0.1)
    total = 0
    for path in new:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total += int(line.split()[1])
                break
        path.unlink()
    return total


def zero(pid: int) -> None:
    subprocess.run(["callgrind_control", "--zero", str(pid)], capture_output=True, check=True)


@contextmanager
def counted_redis(tmp: Path) -> Iterator[tuple[str, int]]:
    port = bench.free_port()
    # hz 1: Redis' timer (serverCron) runs once a second instead of ten times, so that the instructions
    # it spends while a slow, valgrind-run batch lasts are not counted as the requests'.
    argv = [*VALGRIND, f"--callgrind-out-file={tmp}/cg.%p", "redis-server", "--port", str(port), "--bind",
            "127.0.0.1", "--save", "", "--appendonly", "no", "--hz", "1"]
    with bench.started(argv, tmp / "redis.log") as proc:
        import redis

        client = redis.Redis(port=port)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise bench.SetupError("redis-server under valgrind did not start") from None
                time.sleep(0.2)
        client.close()
        yield f"redis://127.0.0.1:{port}/0", proc.pid


def count(setup: str, adapter: str, stores: dict[str, str], redis_pid: int | None, tmp: Path,
          args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    port = bench.free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_SECRET": bench.SECRET,
           "BENCH_SITE_URL": f"http://127.0.0.1:{port}", "BENCH_REDIS_URL": stores.get("redis", ""),
           "BENCH_DATABASE_URL": stores["database"], "PYTHONHASHSEED": "0", "BENCH_REDIS_TIMEOUT": "30"}
    options = argparse.Namespace(concurrency=1, wsgi_server="waitress", users=4, rounds=1, verifies=1, pin=False)
    argv = [*VALGRIND, f"--callgrind-out-file={tmp}/cg.%p", *bench.server_argv(adapter, port, options)]
    log = tmp / f"{setup}-{adapter}.log"
    with bench.started(argv, log, env) as proc:
        deadline = time.monotonic() + 600
        while True:  # wait_ready's 30 s is too short under valgrind
            try:
                bench.wait_ready(proc, port, log)
                break
            except bench.SetupError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
        server = bench.Server(proc, port, adapter, options)
        server.seed()
        server.post(bench.PREFIX_GC, {"freeze": True})
        counts: dict[str, list[tuple[int, int]]] = {v: [] for v in VARIANTS}

        async def drive() -> None:
            conn = bench.Connection("127.0.0.1", port)
            try:
                for variant in VARIANTS:  # warm-up: first-use paths, caches, the connection itself
                    await bench.run_round([conn], server.requests(variant, 20), bench.Stats())
                for _ in range(args.batches):
                    for variant in VARIANTS:
                        builders = server.requests(variant, args.requests)
                        zero(proc.pid)
                        if redis_pid is not None:
                            zero(redis_pid)
                        stats = bench.Stats()
                        await bench.run_round([conn], builders, stats)
                        if stats.errors:
                            raise RuntimeError(f"{variant}: {stats.errors}")
                        srv = dumped_instructions(proc.pid, tmp)
                        red = dumped_instructions(redis_pid, tmp) if redis_pid is not None else 0
                        counts[variant].append((srv, red))
            finally:
                await conn.close()

        asyncio.run(drive())
    n = args.requests
    # The median batch: a batch that met a one-off (a pool's health check, a timer) stands out.
    return {v: (sorted(s for s, _ in c)[len(c) // 2] / n, sorted(r for _, r in c)[len(c) // 2] / n)
            for v, c in counts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", choices=["pg-redis", "sqlite-memory", "all"], default="all")
    parser.add_argument("--adapter", choices=["asgi", "wsgi", "all"], default="all")
    parser.add_argument("--requests", type=int, default=200, help="requests per variant per batch")
    parser.add_argument("--batches", type=int, default=3, help="batches per variant (the median is reported)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind (callgrind) is not installed", file=sys.stderr)
        return 2
    setups = ["pg-redis", "sqlite-memory"] if args.setup == "all" else [args.setup]
    adapters = ["asgi", "wsgi"] if args.adapter == "all" else [args.adapter]
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"commit {bench.commit()}; {args.batches} batches of {args.requests} sequential requests per variant "
          "(median batch); instructions per request")
    with tempfile.TemporaryDirectory(prefix="count-http-") as name, ExitStack() as stack:
        tmp = Path(name)
        for setup in setups:
            stores: dict[str, str] = {}
            redis_pid = None
            if setup == "pg-redis":
                stores["redis"], redis_pid = stack.enter_context(counted_redis(tmp))
                stores["database"] = stack.enter_context(bench.postgres_database())
            for adapter in adapters:
                if setup == "sqlite-memory":
                    stores["database"] = f"sqlite:///{tmp / f'records-{adapter}.db'}"
                result = count(setup, adapter, stores, redis_pid, tmp, args)
                bare = result["bare 1-GET"][0]
                print(f"\n{bench.SETUP_NAMES[setup]}, {adapter.upper()}")
                print(f"  {'variant':<14}{'server':>12}{'bare/variant':>14}{'Redis':>10}")
                for variant, (srv, red) in result.items():
                    print(f"  {variant:<14}{srv:>12,.0f}{bare / srv:>14.0%}{red:>10,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

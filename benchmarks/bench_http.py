"""Over-HTTP benchmark (issue 18): the middleware against bare endpoints doing the same store work.

It starts everything itself: a private ``redis-server`` on a free port, a new PostgreSQL database
(created on 127.0.0.1:5432 as user postgres, schema applied with ``RecordStore(url).upgrade()``,
dropped at the end), SQLite files in a temporary directory, and real servers serving
``benchmarks/http_apps.py``: uvicorn (one process, uvloop + httptools) for ASGI and waitress (one
process, keep-alive, worker threads) for WSGI; ``--wsgi-server werkzeug`` takes Werkzeug's threaded
server instead (no keep-alive: it closes every connection). Two setups, PostgreSQL + Redis and
SQLite + memory, each on both.

    python benchmarks/bench_http.py            # the run recorded in RESULTS.md
    python benchmarks/bench_http.py --quick    # a smoke run (< 60 s)
    python benchmarks/bench_http.py --setup pg-redis --adapter asgi --rounds 30

Per server, six variants take turns in rounds (A, B, C, D, E, A, B, ...), so machine noise hits
them alike; each round sends ``--verifies`` (verify variants) or ``--requests`` (GET variants)
requests of one variant over ``--concurrency`` keep-alive connections. Reported per variant:
requests/s (median of the rounds), p50 and p99 latency (all its requests), the server's and this
client's CPU time per request, how busy the server was and the connections the client had to open
again (0 with keep-alive). The ratios are medians of the per-round ratios (each round's pair measured back to back):

- verify-totp (a pending sign-in challenge answered with the current code) / the bare verify
  (``POST /bench/verify``: the same Redis and SQL calls by hand): target >= 0.60;
- the authenticated pass-through (``GET /protected/ok``: the bare 1-GET's reply behind the
  middleware, which makes the one store round trip) / the bare 1-GET (``GET /bench/one-get``), and
  ``get-session`` / the same bare 1-GET: target >= 0.80. ``demo /api/me`` (the pass-through to the
  demo app's JSON view, behind its routing table) is reported beside them, without a target: the
  difference from the pass-through is the demo app's own cost, not the middleware's;
- p99/p50 of each middleware variant: target <= 3 (over all its requests; the median of each
  round's own p99/p50 is printed beside it, as the load of a shared machine moves between rounds).

Method (each the same for the middleware and its references, which share one server process):

- garbage collection: after the warm-up the server and this client ``gc.collect()`` and
  ``gc.freeze()`` (``--gc default`` leaves the collector alone), and the client's collector is off
  while a round runs (its pauses would count as the server's latency). The server's collections are
  counted per variant (``GET /bench/gc``) and printed;
- Redis' own time per request (``INFO commandstats``, reset before each round), printed: the
  middleware's script runs longer in Redis than the bare GET, on the same 2 cores;
- the server's time runnable but waiting for a CPU, and its preemptions, per request
  (``/proc/PID/task/*/schedstat``, ``status``): on a machine with more runnable processes than
  CPUs these, not the code, set the tails;
- ``--pin``: the server alone on the last CPU, this client and redis-server on the others.

``benchmarks/count_http_instructions.py`` counts the same requests' instructions in the server and in
Redis under callgrind: the figure that the machine's load does not move.

Seeding is never timed: users with TOTP on (``import_totp``), a pending challenge per verify
(``begin_second_factor``, just before the round that uses it), sessions; through ``/bench/*`` seeding
endpoints of the server, because the memory store lives in the server process. A TOTP user answers at
most once per time step (the replay guard), so the pool waits for the next step when it runs dry.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import http.client
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyotp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from banata_middleware.stores.records import RecordStore  # noqa: E402

AUTH = "/api/auth"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-http-secret-" + "h" * 40
PERIOD = 30  # the demo's TOTP step
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 bench_http"
# A cookie header of a real one's size for the bare endpoints, which read none.
FAKE_COOKIE = "banata.session=bench-user-0." + "x" * 43 + "." + "y" * 43
VARIANTS = ("bare verify", "verify-totp", "bare 1-GET", "pass-through", "get-session", "demo /api/me")
# (variant, reference, target ratio)
TARGETS = (("verify-totp", "bare verify", 0.60), ("pass-through", "bare 1-GET", 0.80),
           ("get-session", "bare 1-GET", 0.80))
MAX_P99_P50 = 3.0
PREFIX_GC = "/bench/gc"
SEED_BATCH = 200


class SetupError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- processes and their CPU time -----------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid``, ended threads included (Werkzeug's server starts a thread
    per connection, and closes every connection). In clock ticks (10 ms): summed over a variant's
    rounds, the error per request is small."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_waits(pid: int) -> tuple[float, int]:
    """(seconds its threads spent runnable but waiting for a CPU, times they were preempted), summed
    over the live threads of ``pid`` (``/proc/PID/task/*/schedstat`` and ``status``). What the
    scheduler adds to the server's latencies: on a machine with more runnable processes than CPUs a
    preempted server holds every request in flight for a time slice (milliseconds)."""
    wait, preempted = 0.0, 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            wait += int((task / "schedstat").read_text().split()[1]) / 1e9
            for line in (task / "status").read_text().splitlines():
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    preempted += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return wait, preempted


@contextmanager
def started(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own session, stopped (SIGTERM, then SIGKILL after 5 s) on the way out."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@contextmanager
def redis_server(tmp: Path, args: argparse.Namespace | None = None) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        raise SetupError("redis-server is not on PATH")
    import redis

    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "no"]
    if args is not None:
        argv = pinned(argv, args, server=False)
    with started(argv, tmp / "redis.log") as proc:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise SetupError(f"redis-server exited; see {tmp / 'redis.log'}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SetupError("redis-server did not answer PING within 10 s") from None
                time.sleep(0.02)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new database with the current schema, dropped on the way out."""
    import psycopg

    name = f"banata_bench_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise SetupError(f"PostgreSQL at 127.0.0.1:5432: {exc}") from None
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        try:
            store = RecordStore(url)
            store.upgrade()
            store.engine.dispose()
            yield url
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the HTTP client ------------------------------------------------------------------------------
def raw_request(method: str, path: str, host: str, cookie: str, body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}",
            "Accept: application/json", f"Cookie: {cookie}"]
    if method == "POST":
        head += [f"Origin: http://{host}", "Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive HTTP/1.1 connection (a response body has a Content-Length or is chunked)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0

    async def request(self, raw: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
        assert self.reader is not None
        self.writer.write(raw)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            return 0
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            await self.reader.readexactly(int(lower[at + 17:lower.index(b"\r\n", at + 2)]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";", 1)[0], 16):
                await self.reader.readexactly(size + 2)
            await self.reader.readuntil(b"\r\n")  # no trailers are sent
        else:
            raise RuntimeError(f"a response without a length: {head[:400]!r}")
        if b"\r\nconnection: close" in lower:
            await self.close()
        return int(head[9:12])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with suppress(ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


# -- per-variant bookkeeping ------------------------------------------------------------------------
@dataclass
class Stats:
    rps: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)
    requests: int = 0
    wall: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    connections: int = 0
    tails: list[float] = field(default_factory=list)  # each round's p99/p50
    gc_counts: list[int] = field(default_factory=lambda: [0, 0, 0])  # the server's, per generation
    gc_pause: float = 0.0  # ms, summed
    gc_longest: float = 0.0  # ms
    redis_usec: int = 0  # Redis' own time in commands (INFO commandstats), pg-redis only
    cpu_wait: float = 0.0  # the server's time runnable but not running (s)
    preempted: int = 0  # the server's involuntary context switches

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)


def percentile(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def totp_secret(uid: str) -> str:
    return base64.b32encode(hashlib.sha256(uid.encode()).digest()[:20]).decode()


class Server:
    """One running server and the seeded material its variants use."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, tag: str, args: argparse.Namespace,
                 redis_url: str = "") -> None:
        self.proc, self.port, self.host, self.tag = proc, port, f"127.0.0.1:{port}", tag
        self.args = args
        self.redis: object | None = None  # a client of the hot store's Redis, to read its command stats
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url)
        self.totp_users = [f"{tag}-t{i}" for i in range(args.users)]
        self.last_step: dict[str, int] = {}
        # Enough that one bare user's requests never overlap, even when one waits long for SQLite's write
        # lock (or one each, when the run is that short).
        bare = min(max(400, 50 * args.concurrency), args.rounds * args.verifies + 8 * args.concurrency)
        self.bare_users = [f"{tag}-b{i}" for i in range(bare)]
        self.sessions: list[str] = []
        self.waits = 0

    def post(self, path: str, payload: object, method: str = "POST") -> dict[str, object]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)  # a new one: servers idle them out
        try:
            body = None if method == "GET" else json.dumps(payload)
            conn.request(method, path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise SetupError(f"{path}: {resp.status} {body[:300]!r}")
        return json.loads(body)  # type: ignore[no-any-return]

    def seed(self) -> None:
        users = [[uid, totp_secret(uid)] for uid in self.totp_users]
        for i in range(0, len(users), SEED_BATCH):
            self.post("/bench/seed-totp", {"users": users[i:i + SEED_BATCH]})
        self.post("/bench/seed-bare", {"users": self.bare_users})
        plain = [f"{self.tag}-s{i}" for i in range(max(64, 2 * self.args.concurrency))]
        self.sessions = self.post("/bench/sessions", {"users": plain})["cookies"]  # type: ignore[assignment]

    def redis_reset(self) -> None:
        if self.redis is not None:
            self.redis.config_resetstat()  # type: ignore[attr-defined]

    def redis_usec(self) -> int:
        """Redis' time spent in commands since ``redis_reset`` (its own bookkeeping commands aside)."""
        if self.redis is None:
            return 0
        stats = self.redis.info("commandstats")  # type: ignore[attr-defined]
        return sum(int(v["usec"]) for k, v in stats.items() if not k.startswith(("cmdstat_config", "cmdstat_info")))

    def take_verifiers(self, count: int) -> list[tuple[str, str]]:
        """``count`` (user, challenge cookie) pairs of users that have not answered in this step."""
        while True:
            step = int(time.time() // PERIOD)
            ready = [u for u in self.totp_users if self.last_step.get(u, -1) < step][:count]
            if len(ready) == count:
                break
            self.waits += 1
            time.sleep((step + 1) * PERIOD - time.time() + 0.05)
        cookies: list[str] = self.post("/bench/challenges", {"users": ready})["cookies"]  # type: ignore[assignment]
        return list(zip(ready, cookies, strict=True))

    def requests(self, variant: str, n: int) -> list[Callable[[], bytes]]:
        """The round's requests, each built when sent (a TOTP code is computed at the real time)."""
        host = self.host
        if variant == "verify-totp":
            def verify(uid: str, cookie: str) -> Callable[[], bytes]:
                def build() -> bytes:
                    now = time.time()
                    self.last_step[uid] = int(now // PERIOD)
                    code = pyotp.TOTP(totp_secret(uid)).at(now)
                    return raw_request("POST", AUTH + "/two-factor/verify-totp", host, cookie,
                                       json.dumps({"code": code}).encode())
                return build
            return [verify(uid, cookie) for uid, cookie in self.take_verifiers(n)]
        if variant == "bare verify":
            body = json.dumps({"code": "123456"}).encode()
            made = [raw_request("POST", f"/bench/verify?u={self.bare_users[i % len(self.bare_users)]}", host,
                                FAKE_COOKIE, body) for i in range(n)]
        elif variant == "bare 1-GET":
            made = [raw_request("GET", "/bench/one-get", host, FAKE_COOKIE)] * n
        else:
            path = {"pass-through": "/protected/ok", "demo /api/me": "/api/me"}.get(variant, AUTH + "/get-session")
            made = [raw_request("GET", path, host, self.sessions[i % len(self.sessions)]) for i in range(n)]
        return [_sent_as_is(r) for r in made]


def _sent_as_is(raw: bytes) -> Callable[[], bytes]:
    return lambda: raw


async def run_round(conns: list[Connection], builders: list[Callable[[], bytes]], stats: Stats) -> None:
    queue = iter(builders)

    async def worker(conn: Connection) -> None:
        for build in queue:
            raw = build()
            start = time.perf_counter()
            status = await conn.request(raw)
            stats.latencies.append(time.perf_counter() - start)
            if status != 200:
                stats.errors[status] = stats.errors.get(status, 0) + 1

    await asyncio.gather(*(worker(c) for c in conns))


async def measure(server: Server, args: argparse.Namespace) -> dict[str, Stats]:
    stats = {v: Stats() for v in VARIANTS}
    conns = [Connection("127.0.0.1", server.port) for _ in range(args.concurrency)]
    try:
        for _ in range(2):  # warm-up, not recorded: connections, pools, first-use paths
            for variant in VARIANTS:
                await run_round(conns, server.requests(variant, args.concurrency * 4), Stats())
        # The objects made so far (modules, app, pools, seeded state) are frozen out of the collector's
        # gen 2 walks, in the server (one process for every variant: the same for all) and here.
        server.post(PREFIX_GC, {"freeze": args.gc == "freeze"})
        gc.collect()
        if args.gc == "freeze":
            gc.freeze()
        server.post(PREFIX_GC, None, "GET")  # the collections so far are nobody's
        for _ in range(args.rounds):
            for variant in VARIANTS:
                count = args.verifies if "verify" in variant else args.requests
                builders = server.requests(variant, count)  # seeding: before the clock starts
                s = stats[variant]
                opened = sum(c.opened for c in conns)
                first = len(s.latencies)
                server.redis_reset()
                # This client's collections are not the server's cost: none while a round runs.
                gc.disable()
                wait0, preempted0 = process_waits(server.proc.pid)
                cpu0, client0, t0 = process_cpu(server.proc.pid), time.process_time(), time.perf_counter()
                await run_round(conns, builders, s)
                wall = time.perf_counter() - t0
                s.connections += sum(c.opened for c in conns) - opened
                s.client_cpu += time.process_time() - client0
                s.server_cpu += process_cpu(server.proc.pid) - cpu0
                wait1, preempted1 = process_waits(server.proc.pid)
                s.cpu_wait += wait1 - wait0
                s.preempted += preempted1 - preempted0
                gc.enable()
                s.redis_usec += server.redis_usec()
                collected = server.post(PREFIX_GC, None, "GET")
                for g in range(3):
                    s.gc_counts[g] += collected["counts"][g]  # type: ignore[index]
                s.gc_pause += sum(collected["pause_ms"])  # type: ignore[arg-type]
                s.gc_longest = max(s.gc_longest, collected["longest_ms"])  # type: ignore[type-var]
                s.wall += wall
                s.requests += len(builders)
                s.rps.append(len(builders) / wall)
                mine = s.latencies[first:]
                s.tails.append(percentile(mine, 0.99) / percentile(mine, 0.50))
    finally:
        for c in conns:
            await c.close()
    return stats


def run_client(server: Server, args: argparse.Namespace) -> dict[str, Stats]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(measure(server, args))
    return uvloop.run(measure(server, args))


# -- one configuration --------------------------------------------------------------------------------
def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise SetupError(f"the server exited ({proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/bench/one-get")
            if conn.getresponse().status == 200:
                conn.close()
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SetupError(f"the server did not answer within 30 s; see {log}")
        time.sleep(0.1)


def pinned(argv: list[str], args: argparse.Namespace, server: bool) -> list[str]:
    """``argv`` under ``taskset`` with ``--pin``: the server on the last CPU, everything else (this
    client, redis-server) on the others, so that the client never takes the server's CPU."""
    if not args.pin:
        return argv
    cpus: list[int] = args.cpus
    chosen = cpus[-1:] if server else cpus[:-1]
    return ["taskset", "-c", ",".join(map(str, chosen)), *argv]


def server_argv(adapter: str, port: int, args: argparse.Namespace) -> list[str]:
    return pinned(_server_argv(adapter, port, args), args, server=True)


def _server_argv(adapter: str, port: int, args: argparse.Namespace) -> list[str]:
    if adapter == "asgi":
        # BENCH_ASGI_FACTORY: another factory, e.g. one that wraps asgi_app() to profile the server.
        factory = os.environ.get("BENCH_ASGI_FACTORY", "benchmarks.http_apps:asgi_app")
        return [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
                "--port", str(port), "--lifespan", "off", "--log-level", "warning", "--no-access-log",
                "--loop", "uvloop", "--http", "httptools", "--backlog", "4096", "--timeout-keep-alive", "75"]
    return [sys.executable, "-m", "benchmarks.http_apps", "--host", "127.0.0.1", "--port", str(port),
            "--server", args.wsgi_server, "--threads", str(args.concurrency)]


SERVER_NAMES = {"asgi": "ASGI, uvicorn (1 process, uvloop, httptools)",
                "waitress": "WSGI, waitress (1 process, keep-alive, worker threads = concurrency)",
                "werkzeug": "WSGI, Werkzeug threaded server (1 process, a thread per connection; it closes each one)"}
SETUP_NAMES = {"pg-redis": "PostgreSQL + Redis", "sqlite-memory": "SQLite + memory"}


def run_config(setup: str, adapter: str, stores: dict[str, str], tmp: Path, args: argparse.Namespace) -> bool:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_SECRET": SECRET, "BENCH_SITE_URL": f"http://127.0.0.1:{port}",
           "BENCH_REDIS_URL": stores.get("redis", ""), "BENCH_DATABASE_URL": stores["database"]}
    log = tmp / f"{setup}-{adapter}.log"
    with started(server_argv(adapter, port, args), log, env) as proc:
        wait_ready(proc, port, log)
        server = Server(proc, port, adapter, args, stores.get("redis", ""))
        t0 = time.monotonic()
        server.seed()
        seeded = time.monotonic() - t0
        try:
            stats = run_client(server, args)
        except Exception:
            print(log.read_text()[-3000:], file=sys.stderr)
            raise
    return report(setup, adapter, stats, server, seeded, args)


def report(setup: str, adapter: str, stats: dict[str, Stats], server: Server, seeded: float,
           args: argparse.Namespace) -> bool:
    print(f"\n{SETUP_NAMES[setup]}, {SERVER_NAMES[adapter if adapter == 'asgi' else args.wsgi_server]}")
    print(f"  concurrency {args.concurrency}, {args.rounds} interleaved rounds of {args.verifies} verifies or "
          f"{args.requests} GETs per variant;"
          f" seeding {seeded:.1f} s, pool waits for a new TOTP step: {server.waits}")
    print(f"  {'variant':<14}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99/p50':>9}{'srv CPU µs/req':>16}"
          f"{'client CPU µs/req':>19}{'srv busy':>10}{'conns':>6}  errors")
    good = True
    for name, s in stats.items():
        p50, p99 = s.percentile(0.50), s.percentile(0.99)
        errors = ", ".join(f"{n}x{status or 'conn'}" for status, n in sorted(s.errors.items())) or "0"
        good = good and not s.errors
        print(f"  {name:<14}{statistics.median(s.rps):>9.0f}{p50:>9.2f}{p99:>9.2f}{p99 / p50:>9.2f}"
              f"{s.server_cpu / s.requests * 1e6:>16.0f}{s.client_cpu / s.requests * 1e6:>19.0f}"
              f"{s.server_cpu / s.wall:>10.0%}{s.connections:>6}  {errors}")
    print(f"  {'variant':<14}{'srv GC gen0/1/2':>17}{'GC µs/req':>11}{'longest GC ms':>15}"
          f"{'Redis µs/req':>14}{'client busy':>13}{'srv CPU wait µs/req':>21}{'preempted/1k req':>18}"
          f"{'p99/p50 per round':>19}")
    for name, s in stats.items():
        gens = "/".join(str(n) for n in s.gc_counts)
        print(f"  {name:<14}{gens:>17}{s.gc_pause / s.requests * 1000:>11.1f}{s.gc_longest:>15.1f}"
              f"{s.redis_usec / s.requests:>14.1f}{s.client_cpu / s.wall:>13.0%}"
              f"{s.cpu_wait / s.requests * 1e6:>21.0f}{s.preempted / s.requests * 1000:>18.1f}"
              f"{statistics.median(s.tails):>19.2f}")
    for variant, reference, target in TARGETS:
        ratios = [a / b for a, b in zip(stats[variant].rps, stats[reference].rps, strict=True)]
        ratio = statistics.median(ratios)
        verdict = "OK" if ratio >= target else "OVER"
        print(f"  => {variant} / {reference} = {ratio:.0%} req/s (median of per-round ratios, "
              f"range {min(ratios):.0%}-{max(ratios):.0%}; target >= {target:.0%}): {verdict}")
    for variant, reference, _ in TARGETS:
        s, r = stats[variant], stats[reference]
        tail = s.percentile(0.99) / s.percentile(0.50)
        print(f"  => {variant} p99/p50 = {tail:.2f} (target <= {MAX_P99_P50:g}): "
              f"{'OK' if tail <= MAX_P99_P50 else 'OVER'}; median of the rounds' own p99/p50: "
              f"{statistics.median(s.tails):.2f}; its reference, {reference}: "
              f"{r.percentile(0.99) / r.percentile(0.50):.2f} (rounds {statistics.median(r.tails):.2f})")
    return good


def commit() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + (" + working tree changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", choices=["pg-redis", "sqlite-memory", "all"], default="all")
    parser.add_argument("--adapter", choices=["asgi", "wsgi", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=600, help="GET requests per variant per round")
    parser.add_argument("--verifies", type=int, default=100, help="verify requests per variant per round")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--users", type=int, default=1000, help="TOTP users per server (each answers once a step)")
    parser.add_argument("--wsgi-server", choices=["waitress", "werkzeug"], default="waitress")
    parser.add_argument("--gc", choices=["freeze", "default"], default="freeze",
                        help="freeze: gc.freeze() in the server and this client after the warm-up (default); "
                             "default: leave the collector as it is")
    parser.add_argument("--pin", action="store_true",
                        help="the server on the last CPU, this client and redis-server on the others (taskset)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 rounds, 150 GETs and 30 verifies a round, 200 users")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.verifies, args.users = 2, 150, 30, 200
    setups = ["pg-redis", "sqlite-memory"] if args.setup == "all" else [args.setup]
    if args.pin:
        if shutil.which("taskset") is None or len(os.sched_getaffinity(0)) < 2:
            parser.error("--pin needs taskset and at least 2 CPUs")
        args.cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, args.cpus[:-1])
    adapters = ["asgi", "wsgi"] if args.adapter == "all" else [args.adapter]

    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; commit {commit()}; "
          f"{platform.python_implementation()} {platform.python_version()}; {os.cpu_count()} CPUs; "
          f"load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    good = True
    try:
        with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp_name, ExitStack() as stack:
            tmp = Path(tmp_name)
            for setup in setups:
                stores: dict[str, str] = {}
                if setup == "pg-redis":
                    stores["redis"] = stack.enter_context(redis_server(tmp, args))
                    stores["database"] = stack.enter_context(postgres_database())
                for adapter in adapters:
                    if setup == "sqlite-memory":  # a file per server: the memory store goes with its process
                        stores["database"] = f"sqlite:///{tmp / f'records-{adapter}.db'}"
                    good = run_config(setup, adapter, stores, tmp, args) and good
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        return 2
    print(f"\nload average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if good else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m loadtests``: a whole load test on one machine, started and stopped by itself.

It starts a private ``redis-server`` on a free port, creates a PostgreSQL database of its own (on
``--postgres``, dropped at the end) for the record store, the demo app under a production server (uvicorn
with N workers for ASGI, a pre-forked threaded Werkzeug server for WSGI), seeds users with 2FA and
their pending sign-in challenges through the library (no HTTP, no password hashing), runs Locust
headless for a bounded time, prints a table per endpoint and writes Locust's CSV and HTML reports to
``loadtests/results/<timestamp>/``. Exit status: 0 when every response was the expected one,
1 on any unexpected response (or a class that made no request), 2 when it could not set up,
3 when the seeded pool ran dry (the figures would understate throughput), 130 on Ctrl-C.

``--compare`` runs the reference phases side by side on the same server: the bare 2-round-trip
endpoint, verify-totp, the bare 1-GET endpoint and the authenticated pass-through, one after the
other with the same users, and prints the throughput ratios against the issue's targets.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from banata_middleware.stores.records import RecordStore

from .cpu import CpuSampler
from .seed import PoolPlan, seed_pool

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
PERIOD = 30
MAX_RUN_TIME = 240  # seeded challenges live 300 s (pending TTL); seeding and startup come first

# user class name -> (pool kind, table name)
CLASSES: dict[str, tuple[str, str]] = {
    "VerifyTotpUser": ("totp", "verify-totp"),
    "VerifyBackupCodeUser": ("backup", "verify-backup-code"),
    "WrongCodeAttacker": ("attack", "verify-totp wrong code"),
    "PassThroughUser": ("me", "GET /api/me"),
    "BareTwoRoundTripsUser": ("bare2", "bare 2 round trips"),
    "BareOneGetUser": ("bare1", "bare 1 GET"),
}
SHORT = {"totp": "VerifyTotpUser", "backup": "VerifyBackupCodeUser", "attack": "WrongCodeAttacker",
         "me": "PassThroughUser", "bare2": "BareTwoRoundTripsUser", "bare1": "BareOneGetUser"}
MIXED = ("totp", "backup", "attack", "me")
COMPARE = (("bare2", "totp"), ("bare1", "me"))


class SetupError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_duration(text: str) -> int:
    """Seconds from Locust-style ``90``, ``90s``, ``2m``, ``1h30m``."""
    if text.isdigit():
        return int(text)
    parts = re.fullmatch(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", text.strip())
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 60s, 2m)")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


# -- processes ----------------------------------------------------------------------------------
class Processes:
    """Everything this run started, stopped in reverse order (each started in its own session, so a
    Ctrl-C reaches only the runner, which then stops them: SIGTERM to the group, SIGKILL after 5 s)."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
              log: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (closed with the process)
        try:
            proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            if log:
                out.close()  # type: ignore[union-attr]
        self.started.append((name, proc))
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        with suppress(ProcessLookupError, PermissionError):  # what is left of the group (server workers)
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(5)

    def stop_all(self) -> None:
        while self.started:
            _, proc = self.started.pop()
            self.stop(proc)


def start_redis(procs: Processes, log: Path) -> tuple[str, int]:
    if shutil.which("redis-server") is None:
        raise SetupError("redis-server is not on PATH (apt-get install redis-server)")
    port = free_port()
    proc = procs.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--daemonize", "no"], log=log)
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    try:
        while True:
            if proc.poll() is not None:
                raise SetupError(f"redis-server exited ({proc.returncode}); see {log}")
            try:
                if client.ping():
                    return f"redis://127.0.0.1:{port}/0", proc.pid
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SetupError("redis-server did not answer PING within 10 s") from None
                time.sleep(0.02)
    finally:
        client.close()


def create_database(server: str) -> str:
    """A new database on the PostgreSQL ``server`` (a URL of its maintenance database), migrated:
    the record store the server's workers and the seeding share, as production's processes do."""
    name = "banata_loadtest_" + secrets.token_hex(4)
    _admin_sql(server, f"CREATE DATABASE {name}")
    url = make_url(server).set(database=name).render_as_string(hide_password=False)
    store = RecordStore(url)
    try:
        store.upgrade()
    finally:
        store.dispose()
    return url


def drop_database(server: str, url: str) -> None:
    _admin_sql(server, f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")


def _admin_sql(server: str, sql: str) -> None:
    engine = create_engine(make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT",
                           connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise SetupError(f"PostgreSQL at {make_url(server).render_as_string(hide_password=True)}: "
                         f"{type(cause).__name__}: {str(cause).splitlines()[0]}") from None
    finally:
        engine.dispose()


def server_argv(args: argparse.Namespace, port: int) -> list[str]:
    py = sys.executable
    if args.adapter == "asgi":
        return [py, "-m", "uvicorn", "--factory", "loadtests.app:asgi_app", "--host", "127.0.0.1", "--port",
                str(port), "--workers", str(args.workers), "--lifespan", "off", "--log-level", "warning",
                "--no-access-log", "--loop", "uvloop", "--http", "httptools", "--backlog", "4096"]
    return [py, "-m", "loadtests.wsgi_server", "--host", "127.0.0.1", "--port", str(port), "--workers",
            str(args.workers), "--server", args.wsgi_server]


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SetupError(f"the server exited ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url + "/bare/one-get", timeout=2) as resp:
                if resp.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SetupError(f"the server did not answer within {timeout:.0f} s; see {log}")
        time.sleep(0.1)
    for _ in range(50):  # let every worker finish importing and open its Redis connections
        with urllib.request.urlopen(url + "/bare/one-get", timeout=5):
            pass


# -- pools --------------------------------------------------------------------------------------
def plan_for(kinds: tuple[str, ...], users: int, seconds: int, rate: float, tag: str) -> PoolPlan:
    """Enough seeded material that no class runs dry at up to ``rate`` requests/s for the whole run.

    ``rate`` is what one class reaches alone; in a mixed run a class is given 1.5x its share of the
    users. TOTP: a user answers at most once per 30 s step, so ``rate`` x 30 users (+20%) each with
    one challenge per step the run covers; backup codes: 10 per user; attackers: 10 guesses lock a
    user (two challenges of 5 attempts)."""
    counts = split_users(kinds, users)

    def cap(kind: str) -> float:
        if kind not in counts:
            return 0.0
        share = min(1.0, 1.5 * counts[kind] / users) if len(counts) > 1 else 1.0
        return max(rate * share, 20.0 * counts[kind])

    totp_rate, backup_rate, attack_rate = cap("totp"), cap("backup"), cap("attack")
    return PoolPlan(
        totp_users=math.ceil(totp_rate * min(seconds, PERIOD) * 1.2) if totp_rate else 0,
        totp_challenges=max(1, math.ceil(seconds / PERIOD)),
        backup_users=math.ceil(backup_rate * seconds * 1.2 / 10) if backup_rate else 0,
        backup_challenges=10,
        attack_users=max(counts.get("attack", 0), math.ceil(attack_rate * seconds / 10)) if attack_rate else 0,
        attack_challenges=2,
        sessions=1000 if {"me", "bare1"} & set(kinds) else 0,
        tag=tag,
    )


def split_users(kinds: tuple[str, ...], users: int) -> dict[str, int]:
    """How Locust spreads ``users`` over equally weighted classes (round robin in the given order)."""
    base, extra = divmod(users, len(kinds))
    return {k: base + (1 if i < extra else 0) for i, k in enumerate(kinds)}


# -- one locust run -----------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    requests: int
    failures: int
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def server_errors(self) -> int:
        return sum(n for kind, n in self.kinds.items() if kind[:1] == "5")


@dataclass
class PhaseResult:
    label: str
    kinds: tuple[str, ...]
    rows: dict[str, Row]
    summary: dict[str, Any]
    pool_sizes: dict[str, int]
    seconds: int
    users: int
    locust_exit: int
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms per request in steady state, per process
    cpu_requests: int = 0


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def read_stats(prefix: Path) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    stats = prefix.with_name(prefix.name + "_stats.csv")
    with open(stats, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            if rec["Name"] == "Aggregated":
                continue
            rows[rec["Name"]] = Row(rec["Name"], int(rec["Request Count"]), int(rec["Failure Count"]),
                                    float(rec["Requests/s"]), _num(rec["50%"]), _num(rec["95%"]), _num(rec["99%"]))
    failures = prefix.with_name(prefix.name + "_failures.csv")
    if failures.exists():
        with open(failures, newline="", encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                row = rows.setdefault(rec["Name"], Row(rec["Name"], 0, 0, 0.0, None, None, None))
                kind = rec["Error"].removeprefix("CatchResponseError(").removesuffix(")").strip("'\"")
                row.kinds[kind] = row.kinds.get(kind, 0) + int(rec["Occurrences"])
    return rows


def steady_cpu(prefix: Path, sampler: CpuSampler) -> tuple[dict[str, float], int]:
    """CPU ms per request of each sampled process over the steady part of the run: from the first
    to the last second of Locust's history after the stats reset (ramp-up done)."""
    history = prefix.with_name(prefix.name + "_stats_history.csv")
    if not history.exists():
        return {}, 0
    points: list[tuple[float, int]] = []
    with open(history, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            if rec["Name"] == "Aggregated":
                points.append((float(rec["Timestamp"]), int(rec["Total Request Count"])))
    # After the reset the count restarts; keep the last monotonic run of non-zero counts.
    steady: list[tuple[float, int]] = []
    for t, n in points:
        if steady and n < steady[-1][1]:
            steady = []
        if n > 0:
            steady.append((t, n))
    if len(steady) < 3:
        return {}, 0
    (t1, n1), (t2, n2) = steady[0], steady[-1]
    a, b = sampler.at(t1), sampler.at(t2)
    if a is None or b is None or n2 <= n1:
        return {}, 0
    return {name: (b[name] - a[name]) * 1000 / (n2 - n1) for name in a}, n2 - n1


def run_phase(args: argparse.Namespace, procs: Processes, *, label: str, kinds: tuple[str, ...], users: int,
              seconds: int, server_pid: int, redis_pid: int, host: str, redis_url: str, database_url: str,
              secret: str, site_url: str, out: Path, tmp: Path) -> PhaseResult:
    plan = plan_for(kinds, users, seconds, args.pool_rate, tag=label)
    started = time.monotonic()
    pool = seed_pool(redis_url, database_url, secret, site_url, plan, processes=args.seed_processes)
    pool_file = tmp / f"{label}.pool.json"
    with open(pool_file, "w", encoding="utf-8") as fh:
        json.dump(pool, fh, separators=(",", ":"))
    sizes = {"totp users": plan.totp_users, "totp challenges": plan.totp_users * plan.totp_challenges,
             "backup users": plan.backup_users, "attack users": plan.attack_users, "sessions": plan.sessions}
    seeded = ", ".join(f"{v} {k}" for k, v in sizes.items() if v)
    print(f"[{label}] seeded {seeded or 'nothing'} in {time.monotonic() - started:.1f} s", flush=True)
    del pool

    prefix = out / label
    summary_file = out / f"{label}_summary.json"
    env = {**os.environ, "LOADTEST_POOL": str(pool_file), "LOADTEST_SUMMARY": str(summary_file),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    argv = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
            "-r", str(args.spawn_rate or users), "--run-time", f"{seconds}s", "--host", host,
            "--csv", str(prefix), "--html", str(out / f"{label}.html"), "--reset-stats", "--only-summary",
            "--loglevel", "WARNING", "--stop-timeout", "5", *(SHORT[k] for k in kinds)]
    print(f"[{label}] locust: {users} users ({', '.join(kinds)}) for {seconds} s against {host}", flush=True)
    proc = procs.start(f"locust-{label}", argv, env=env, log=out / f"{label}.locust.log")
    sampler = CpuSampler({"server": server_pid, "redis": redis_pid, "locust": proc.pid})
    sampler.__enter__()
    spy = None
    if args.profile:
        spy = procs.start(f"py-spy-{label}", [args.profile, "record", "--pid", str(server_pid), "--subprocesses",
                                             "--nonblocking", "--format", "raw", "--rate", "200",
                                             "--duration", str(max(1, seconds - 2)),
                                             "-o", str(out / f"{label}.profile.txt")],
                          log=out / f"{label}.py-spy.log")
    try:
        code = proc.wait(seconds + 120)
        if spy is not None:
            spy.wait(30)
    except subprocess.TimeoutExpired:
        raise SetupError(f"locust did not finish in time; see {out / (label + '.locust.log')}") from None
    finally:
        sampler.__exit__()
        for p in (proc, spy):
            if p is not None:
                procs.stop(p)
        procs.started = [(n, p) for n, p in procs.started if p not in (proc, spy)]
        pool_file.unlink(missing_ok=True)
    if args.profile and (out / f"{label}.profile.txt").exists():
        print(profile_summary(out / f"{label}.profile.txt"), flush=True)
    if not prefix.with_name(label + "_stats.csv").exists():
        raise SetupError(f"locust wrote no statistics (exit {code}); see {out / (label + '.locust.log')}")
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    cpu_ms, cpu_requests = steady_cpu(prefix, sampler)
    return PhaseResult(label, kinds, read_stats(prefix), summary, sizes, seconds, users, code, cpu_ms, cpu_requests)


# -- reporting ----------------------------------------------------------------------------------
_PROFILE_AREAS = (
    ("banata_middleware/", "banata_middleware (adapter, gateway, flows, store)"),
    ("itsdangerous/", "itsdangerous / pyotp / cryptography"),
    ("pyotp/", "itsdangerous / pyotp / cryptography"),
    ("cryptography/", "itsdangerous / pyotp / cryptography"),
    ("redis/", "redis-py client"),
    ("starlette/", "starlette (demo app, bare endpoints)"),
    ("werkzeug/", "werkzeug server + wrappers"),
    ("socketserver.py", "werkzeug server + wrappers"),
    ("http/server.py", "werkzeug server + wrappers"),
    ("uvicorn/", "uvicorn (HTTP parsing and writing)"),
    ("loadtests/", "loadtests app (routing, bare endpoints)"),
)
_LOOP_LEAVES = ("Runner.run ", "run_until_complete ", "_run_once ", "select ", "BaseEventLoop.run_forever ")


def profile_summary(path: Path, top: int = 12) -> str:
    """Where the server's on-CPU samples went: by area (the nearest non-stdlib frame from the leaf)
    and the top leaf functions. ``path`` is py-spy's raw (collapsed stacks) output."""
    areas: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            total += n
            leaf = frames[-1]
            leaves[leaf] = leaves.get(leaf, 0) + n
            area = "other (stdlib)"
            if leaf.startswith(_LOOP_LEAVES):
                area = "event loop (uvloop C code: socket I/O, callbacks)"
            else:
                for frame in reversed(frames):
                    hit = next((name for marker, name in _PROFILE_AREAS if "(" + marker in frame), None)
                    if hit:
                        area = hit
                        break
            areas[area] = areas.get(area, 0) + n
    if not total:
        return f"profile: no samples in {path}"
    lines = [f"profile ({total} on-CPU samples of the server processes, {path.name}):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in sorted(areas.items(), key=lambda kv: -kv[1])]
    lines.append("  top functions (self):")
    lines += [f"  {n / total:6.1%}  {name[:110]}" for name, n in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(result: PhaseResult) -> str:
    lines = [f"{'endpoint':<24} {'requests':>9} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
             f"{'failures':>8} {'5xx':>5}"]
    names = [CLASSES[SHORT[k]][1] for k in result.kinds]
    for name in names + sorted(set(result.rows) - set(names)):
        row = result.rows.get(name, Row(name, 0, 0, 0.0, None, None, None))
        lines.append(f"{name:<24} {row.requests:>9} {row.rps:>8.1f} {_ms(row.p50):>7} {_ms(row.p95):>7} "
                     f"{_ms(row.p99):>7} {row.failures:>8} {row.server_errors:>5}")
    if result.cpu_ms:
        lines.append(f"CPU per request (steady state, {result.cpu_requests} requests): "
                     + ", ".join(f"{name} {ms:.3f} ms" for name, ms in result.cpu_ms.items()))
    kinds = [(name, kind, n) for name, row in result.rows.items() for kind, n in sorted(row.kinds.items())]
    if kinds:
        lines.append("failures by kind:")
        lines += [f"  {name}: {n} x {kind}" for name, kind, n in kinds]
    s = result.summary
    used = s.get("distinct_users", {})
    parts = [f"{kind} {used[kind]}" for kind in ("totp", "backup", "attack") if used.get(kind)]
    if parts:
        lines.append("distinct users used: " + ", ".join(parts)
                     + f" (never reused within a 30 s step: {'yes' if not s.get('reused_within_step') else 'NO'})")
    if s.get("attacker_refusals"):
        lines.append("attacker refusals: " + ", ".join(f"{n} x {k}" for k, n in sorted(s["attacker_refusals"].items())))
    if s.get("pool_waits"):
        lines.append(f"POOL RAN DRY: {s['pool_waits']} waits; re-run with a larger --pool-rate")
    return "\n".join(lines)


def problems(result: PhaseResult) -> tuple[list[str], bool]:
    """(unexpected-response problems, pool ran dry)."""
    found = []
    for kind in result.kinds:
        name = CLASSES[SHORT[kind]][1]
        row = result.rows.get(name)
        if row is None or row.requests == 0:
            found.append(f"{name}: no request was made")
        elif row.failures:
            found.append(f"{name}: {row.failures} unexpected responses")
    for name in set(result.rows) - {CLASSES[SHORT[k]][1] for k in result.kinds}:
        if result.rows[name].failures:
            found.append(f"{name}: {result.rows[name].failures} failures")
    if result.summary.get("reused_within_step"):
        found.append("a user was reused within a TOTP step")
    return found, bool(result.summary.get("pool_waits"))


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def compare_report(rounds: list[dict[str, PhaseResult]]) -> tuple[str, dict[str, Any]]:
    """The issue's targets from the compare phases. Each ratio is computed per round (phases of one
    round run back to back) and the median over rounds is judged. Next to the throughput ratio it
    gives the ratio of CPU time per request (server processes; and server + Redis + Locust, the
    whole box), which a busy neighbour on a shared machine disturbs far less than requests/s."""

    def row(results: dict[str, PhaseResult], kind: str) -> Row:
        name = CLASSES[SHORT[kind]][1]
        return results[kind].rows.get(name, Row(name, 0, 0, 0.0, None, None, None))

    def cpu(results: dict[str, PhaseResult], kind: str, box: bool) -> float:
        ms = results[kind].cpu_ms
        return sum(ms.values()) if box else ms.get("server", 0.0)

    def ratio(a: float, b: float) -> float:
        return a / b if b else 0.0

    per_round = []
    for res in rounds:
        verify, bare2, me, bare1 = (row(res, k) for k in ("totp", "bare2", "me", "bare1"))
        per_round.append({
            "verify_rps": verify.rps, "bare2_rps": bare2.rps, "me_rps": me.rps, "bare1_rps": bare1.rps,
            "verify_vs_bare2": ratio(verify.rps, bare2.rps), "passthrough_vs_bare1": ratio(me.rps, bare1.rps),
            "verify_server_cpu_ms": cpu(res, "totp", False), "bare2_server_cpu_ms": cpu(res, "bare2", False),
            "me_server_cpu_ms": cpu(res, "me", False), "bare1_server_cpu_ms": cpu(res, "bare1", False),
            "verify_vs_bare2_by_server_cpu": ratio(cpu(res, "bare2", False), cpu(res, "totp", False)),
            "passthrough_vs_bare1_by_server_cpu": ratio(cpu(res, "bare1", False), cpu(res, "me", False)),
            "verify_vs_bare2_by_box_cpu": ratio(cpu(res, "bare2", True), cpu(res, "totp", True)),
            "passthrough_vs_bare1_by_box_cpu": ratio(cpu(res, "bare1", True), cpu(res, "me", True)),
            "verify_p50": verify.p50 or 0.0, "verify_p99": verify.p99 or 0.0,
            "verify_p99_over_p50": ratio(verify.p99 or 0.0, verify.p50 or 0.0) if verify.p50 else float("inf"),
            "unexpected": sum(r.failures for ph in res.values() for r in ph.rows.values()),
            "server_errors": sum(r.server_errors for ph in res.values() for r in ph.rows.values()),
        })
    m = {key: _median([float(r[key]) for r in per_round]) for key in per_round[0]}
    unexpected = sum(int(r["unexpected"]) for r in per_round)
    five = sum(int(r["server_errors"]) for r in per_round)
    ok1, ok2, ok3 = m["verify_vs_bare2"] >= 0.6, m["passthrough_vs_bare1"] >= 0.8, m["verify_p99_over_p50"] <= 3
    first = rounds[0]["totp"]
    n = len(rounds)

    def spread(key: str, fmt: str) -> str:
        return "" if n == 1 else " (rounds: " + ", ".join(format(r[key], fmt) for r in per_round) + ")"

    lines = [
        f"compare ({first.users} users, {first.seconds} s per phase, same server; "
        f"{'median of ' + str(n) + ' rounds' if n > 1 else 'one round'}):",
        f"  verify-totp / bare 2 round trips: {m['verify_vs_bare2']:.0%} of the throughput"
        f"{spread('verify_vs_bare2', '.0%')} (target >= 60%) {'PASS' if ok1 else 'MISS'}",
        f"      req/s {m['verify_rps']:.0f} vs {m['bare2_rps']:.0f}; server CPU/request "
        f"{m['verify_server_cpu_ms']:.3f} vs {m['bare2_server_cpu_ms']:.3f} ms -> "
        f"{m['verify_vs_bare2_by_server_cpu']:.0%}; whole box -> {m['verify_vs_bare2_by_box_cpu']:.0%}",
        f"  GET /api/me / bare 1 GET: {m['passthrough_vs_bare1']:.0%} of the throughput"
        f"{spread('passthrough_vs_bare1', '.0%')} (target >= 80%) {'PASS' if ok2 else 'MISS'}",
        f"      req/s {m['me_rps']:.0f} vs {m['bare1_rps']:.0f}; server CPU/request "
        f"{m['me_server_cpu_ms']:.3f} vs {m['bare1_server_cpu_ms']:.3f} ms -> "
        f"{m['passthrough_vs_bare1_by_server_cpu']:.0%}; whole box -> {m['passthrough_vs_bare1_by_box_cpu']:.0%}",
        f"  verify-totp p99/p50 = {m['verify_p99']:.0f}/{m['verify_p50']:.0f} ms: {m['verify_p99_over_p50']:.2f}x"
        f"{spread('verify_p99_over_p50', '.1f')} (target <= 3x) {'PASS' if ok3 else 'MISS'}",
        f"  unexpected responses: {unexpected}; 5xx: {five}",
    ]
    data = {"median": m, "rounds": per_round, "unexpected": unexpected, "server_errors": five,
            "targets_met": ok1 and ok2 and ok3 and not unexpected and not five}
    return "\n".join(lines), data


# -- main ---------------------------------------------------------------------------------------
@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", choices=["asgi", "wsgi"], default="asgi",
                   help="asgi: Starlette adapter under uvicorn; wsgi: Werkzeug adapter (default asgi)")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default 2, one per core)")
    p.add_argument("--wsgi-server", choices=["werkzeug", "gunicorn"], default="werkzeug",
                   help="WSGI server: pre-forked threaded Werkzeug (default) or gunicorn gthread if installed")
    p.add_argument("-u", "--users", type=int, default=50, help="concurrent Locust users (default 50)")
    p.add_argument("-r", "--spawn-rate", type=float, default=0, help="users started per second (default: all in 1 s)")
    p.add_argument("-t", "--run-time", type=parse_duration, default=30, help="per run or phase, e.g. 60s (default 30s)")
    p.add_argument("--classes", default=",".join(MIXED),
                   help=f"comma-separated user classes of the mixed run, from {','.join(SHORT)} (default: %(default)s)")
    p.add_argument("--compare", action="store_true",
                   help="run the reference phases (bare2, totp, bare1, me) one after the other and print the ratios")
    p.add_argument("--redis-pool", choices=["library", "blocking"], default="library",
                   help="the server's store: RedisStore.from_url as shipped (default), or the same settings on "
                        "redis-py's blocking connection pools")
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                   help="a PostgreSQL server (URL of a database to connect to) on which the run creates, then "
                        "drops, a database of its own for the record store (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=1,
                   help="with --compare: repeat the four phases this many times and report medians (default 1)")
    p.add_argument("--pool-rate", type=float, default=2500,
                   help="requests/s one class could reach alone, to size the seeded pool (default 2500)")
    p.add_argument("--seed-processes", type=int, default=2, help="processes that seed the pool (default 2)")
    p.add_argument("--profile", nargs="?", const="py-spy", default=None, metavar="PY_SPY",
                   help="sample the server with py-spy during each run (raw stacks + top functions in the results)")
    p.add_argument("--results", type=Path, default=None, help="results folder (default loadtests/results/<timestamp>)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        kinds = tuple(k.strip() for k in args.classes.split(",") if k.strip())
        unknown = [k for k in kinds if k not in SHORT]
        if unknown or not kinds:
            raise SetupError(f"unknown classes {unknown}; choose from {', '.join(SHORT)}")
        if args.users < 1 or args.workers < 1 or args.run_time < 1 or args.rounds < 1:
            raise SetupError("--users, --workers, --run-time and --rounds must be positive")
        if args.run_time > MAX_RUN_TIME and (args.compare or {"totp", "backup", "attack"} & set(kinds)):
            raise SetupError(f"--run-time is at most {MAX_RUN_TIME} s with the verify classes: the seeded "
                             "challenges expire 300 s after sign-in (the demo's pending TTL)")
        if args.adapter == "wsgi":
            try:
                import banata_middleware.demo.wsgi  # noqa: F401
            except ImportError as exc:
                raise SetupError(f"the WSGI demo app is not importable: {exc}") from None
        if args.adapter == "wsgi" and args.wsgi_server == "gunicorn" and shutil.which("gunicorn") is None:
            import importlib.util

            if importlib.util.find_spec("gunicorn") is None:
                raise SetupError("--wsgi-server gunicorn: gunicorn is not installed (pip install gunicorn)")
    except SetupError as exc:
        print(f"loadtests: {exc}", file=sys.stderr)
        return 2

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.results or ROOT / "loadtests" / "results" / f"{stamp}-{args.adapter}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="banata-loadtest-"))
    report: list[str] = []
    status = 0
    database_url: str | None = None
    with _sigterm_as_interrupt():
        try:
            redis_url, redis_pid = start_redis(procs, out / "redis.log")
            database_url = create_database(args.postgres)
            port = free_port()
            site_url = f"http://localhost:{port}"
            host = f"http://127.0.0.1:{port}"
            secret = secrets.token_urlsafe(48)
            env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": database_url,
                   "BANATA_AUTH_SECRET": secret, "SITE_URL": site_url,
                   "LOADTEST_REDIS_POOL": args.redis_pool,
                   "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
            server_desc = (f"uvicorn, {args.workers} worker(s)" if args.adapter == "asgi"
                           else f"{args.wsgi_server} (threaded), {args.workers} worker(s)")
            if args.redis_pool == "blocking":
                server_desc += ", blocking Redis pool"
            header = (f"banata-middleware load test: {args.adapter} ({server_desc}), Redis {redis_url}, "
                      f"PostgreSQL {make_url(database_url).render_as_string()}, "
                      f"{os.cpu_count()} CPUs, results in {out}")
            print(header, flush=True)
            report.append(header)
            server = procs.start("server", server_argv(args, port), env=env, log=out / "server.log")
            wait_ready(server, host, out / "server.log")
            common = dict(server_pid=server.pid, redis_pid=redis_pid, host=host, redis_url=redis_url,
                          database_url=database_url, secret=secret, site_url=site_url, out=out, tmp=tmp)
            dry = False
            if args.compare:
                rounds: list[dict[str, PhaseResult]] = []
                for n in range(1, args.rounds + 1):
                    results: dict[str, PhaseResult] = {}
                    for kind in ("bare2", "totp", "bare1", "me"):
                        label = f"compare-{kind}" + (f"-{n}" if args.rounds > 1 else "")
                        res = run_phase(args, procs, label=label, kinds=(kind,), users=args.users,
                                        seconds=args.run_time, **common)  # type: ignore[arg-type]
                        results[kind] = res
                        text = table(res)
                        print(text + "\n", flush=True)
                        report.append(f"[{label}]\n{text}")
                        found, ran_dry = problems(res)
                        dry = dry or ran_dry
                        if found:
                            status = 1
                            print("UNEXPECTED: " + "; ".join(found), flush=True)
                            report.append("UNEXPECTED: " + "; ".join(found))
                    rounds.append(results)
                text, data = compare_report(rounds)
                (out / "compare.json").write_text(json.dumps(data, indent=2))
                print(text, flush=True)
                report.append(text)
            else:
                res = run_phase(args, procs, label="mixed", kinds=kinds, users=args.users, seconds=args.run_time,
                                **common)  # type: ignore[arg-type]
                text = table(res)
                print(text, flush=True)
                report.append(text)
                found, dry = problems(res)
                if found:
                    status = 1
                    print("UNEXPECTED: " + "; ".join(found), flush=True)
                    report.append("UNEXPECTED: " + "; ".join(found))
            if server.poll() is not None:
                status = status or 1
                print(f"the server died during the run ({server.returncode}); see {out / 'server.log'}", flush=True)
            if dry and not status:
                status = 3
        except SetupError as exc:
            print(f"loadtests: {exc}", file=sys.stderr)
            status = 2
        except Exception:  # report, then still stop everything below
            import traceback

            traceback.print_exc()
            status = 2
        except KeyboardInterrupt:
            print("loadtests: interrupted; stopping what it started", file=sys.stderr)
            status = 130
        finally:
            procs.stop_all()
            if database_url is not None:  # after the server: its workers hold connections to it
                with suppress(SetupError):
                    drop_database(args.postgres, database_url)
            shutil.rmtree(tmp, ignore_errors=True)
    (out / "report.txt").write_text("\n\n".join(report) + "\n")
    print(f"results: {out} (exit {status})", flush=True)
    return status

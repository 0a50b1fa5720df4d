"""In-process micro-benchmark: what the middleware adds to one request, with no HTTP and no Redis.

The apps are called directly (ASGI with a built scope, WSGI with a built environ) on the memory store,
so the figures are the middleware's own Python cost. Variants are run in interleaved rounds (bare,
middleware, reference, bare, ...) so that machine noise hits them alike; each round times a batch of
requests and the report gives the median of the rounds' per-request times.

    python benchmarks/bench_inprocess.py                 # the default run recorded in RESULTS.md
    python benchmarks/bench_inprocess.py --profile asgi  # cProfile of the middleware's pass-through
    python benchmarks/bench_inprocess.py --breakdown     # the pass-through timed piece by piece
    python benchmarks/bench_inprocess.py --quick         # a short run, to check the script works

Times are this thread's CPU time (``time.thread_time_ns``), with wall time beside them: on a shared
2-core machine the wall clock also counts the time other processes held the CPU.

ASGI: an authenticated GET to a trivial Starlette endpoint through ``BanataMiddleware`` against the same
endpoint bare, plus a no-op ``BaseHTTPMiddleware`` for reference, and ``get-session`` (answered by
the middleware itself). WSGI (when the adapter exists): the
same against a bare Werkzeug app. Then the cost of one verify-totp, as a sign-in challenge and as a
step-up (each needs a new TOTP step, so these are timed one call at a time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from banata_middleware import BanataAuth, PasswordHashing, Policies
from banata_middleware.adapters.starlette import BanataMiddleware
from banata_middleware.demo.app import demo_config
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.clocks import FrozenClock
from banata_middleware.stores import MemoryStore

SITE = "http://testserver"
SECRET = "bench-secret-" + "b" * 40
PASSWORD = "correct horse battery staple"
T0 = 1_800_000_010
# Headers a browser sends with a same-site fetch (the middleware decodes only those it reads).
BROWSER_HEADERS = [
    (b"host", b"testserver"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"),
    (b"accept", b"application/json, text/plain, */*"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"referer", b"http://testserver/dashboard"),
    (b"sec-fetch-site", b"same-origin"),
    (b"sec-fetch-mode", b"cors"),
    (b"connection", b"keep-alive"),
]

try:
    from banata_middleware.adapters.werkzeug import BanataMiddleware as WsgiMiddleware
except ImportError:  # the WSGI adapter is optional
    WsgiMiddleware = None  # type: ignore[assignment,misc]
try:
    from prometheus_client import CollectorRegistry

    from banata_middleware.metrics import Metrics
except ImportError:  # metrics are the optional 'metrics' extra
    Metrics = None  # type: ignore[assignment,misc]


# -- the apps ----------------------------------------------------------------------------------

async def ping(request: StarletteRequest) -> Response:
    return JSONResponse({"ok": True})


def starlette_bare() -> Starlette:
    return Starlette(routes=[Route("/api/ping", ping)])


async def passthrough(request: StarletteRequest, call_next: Callable[[StarletteRequest], Awaitable[Response]]
                      ) -> Response:
    return await call_next(request)


def make_auth(clock: FrozenClock) -> BanataAuth:
    # Password hashing is lowered only so that the verify benchmark's sign-ins (untimed) are quick;
    # neither the pass-through nor a verification hashes a password.
    # The verify benchmark signs one user in hundreds of times from one address under a frozen clock:
    # the cap of live sessions per user and the per-address limits would end or refuse those sessions.
    config = demo_config(secret=SECRET, site_url=SITE, clock=clock, public_paths=(),
                         password_hashing=PasswordHashing(n=2**8),
                         policies=Policies(max_sessions_per_user=0, password_hashes_per_address=100_000,
                                           sign_up_per_address=100_000))
    return BanataAuth(config, store=MemoryStore(clock))  # the embedded shape: memory + a SQLite file


def with_metrics(auth: BanataAuth) -> BanataAuth | None:
    """The same app (config and stores: the same sessions and records) with Prometheus metrics on,
    in a private registry; None without the 'metrics' extra."""
    if Metrics is None:
        return None
    return BanataAuth(auth.config, store=auth.store, records=auth.records, metrics=Metrics(CollectorRegistry()))


# -- ASGI plumbing -----------------------------------------------------------------------------

def asgi_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }


async def asgi_call(app: Any, scope: dict[str, Any], body: bytes = b"") -> tuple[int, dict[str, list[str]], bytes]:
    """One request, collecting the response (for set-up and checks, not for timing)."""
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    await app(dict(scope), receive, send)
    headers: dict[str, list[str]] = {}
    for k, v in messages[0]["headers"]:
        headers.setdefault(k.decode().lower(), []).append(v.decode())
    return messages[0]["status"], headers, b"".join(m.get("body", b"") for m in messages[1:])


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    pass


Timing = tuple[float, float]  # (CPU µs, wall µs) per request


def _now() -> tuple[int, int]:
    return time.thread_time_ns(), time.perf_counter_ns()


def _per_request(start: tuple[int, int], n: int) -> Timing:
    cpu, wall = _now()
    return (cpu - start[0]) / n / 1000, (wall - start[1]) / n / 1000


async def asgi_batch(app: Any, scope: dict[str, Any], n: int) -> Timing:
    """Per-request µs over ``n`` requests (the scope is copied per request: apps write to it)."""
    start = _now()
    for _ in range(n):
        await app(dict(scope), _receive, _send)
    return _per_request(start, n)


def cookie_value(headers: dict[str, list[str]], name: str) -> str:
    for header in headers.get("set-cookie", []):
        if header.startswith(name + "="):
            return header.split(";", 1)[0].split("=", 1)[1]
    raise LookupError(name)


def json_post(path: str, payload: Any, cookie: str = "") -> tuple[dict[str, Any], bytes]:
    body = json.dumps(payload).encode()
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"origin", SITE.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return asgi_scope("POST", path, headers), body


# -- WSGI plumbing -----------------------------------------------------------------------------

def werkzeug_bare() -> Any:
    from werkzeug.exceptions import HTTPException
    from werkzeug.routing import Map, Rule
    from werkzeug.wrappers import Request as WRequest
    from werkzeug.wrappers import Response as WResponse

    urls = Map([Rule("/api/ping", endpoint="ping")])

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        WRequest(environ)
        try:
            urls.bind_to_environ(environ).match()
            response: Any = WResponse(b'{"ok":true}', mimetype="application/json")
        except HTTPException as exc:
            response = exc
        return response(environ, start_response)

    return app


def wsgi_environ(method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> dict[str, Any]:
    from werkzeug.test import EnvironBuilder

    builder = EnvironBuilder(path=path, method=method, base_url=SITE, data=body or None,
                             headers=[(k.decode(), v.decode()) for k, v in headers if k != b"host"],
                             environ_overrides={"REMOTE_ADDR": "127.0.0.1"})
    try:
        return builder.get_environ()
    finally:
        builder.close()


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
    return lambda data: None


def wsgi_call(app: Any, environ: dict[str, Any]) -> tuple[int, bytes]:
    seen: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append(status)
        return lambda data: None

    result = app(dict(environ), start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return int(seen[0].split()[0]), body


def wsgi_batch(app: Any, environ: dict[str, Any], n: int) -> Timing:
    start = _now()
    for _ in range(n):
        result = app(dict(environ), _start_response)
        for _chunk in result:
            pass
        if hasattr(result, "close"):
            result.close()
    return _per_request(start, n)


# -- the runs ----------------------------------------------------------------------------------

def medians(samples: dict[str, list[Timing]]) -> dict[str, Timing]:
    return {name: (statistics.median(t[0] for t in values), statistics.median(t[1] for t in values))
            for name, values in samples.items()}


def interleaved(variants: dict[str, Callable[[], Timing]], rounds: int) -> dict[str, Timing]:
    """Medians over ``rounds`` of each variant's per-request µs, the variants taking turns."""
    samples: dict[str, list[Timing]] = {name: [] for name in variants}
    for run in variants.values():  # warm-up round (caches, first-call paths), not counted
        run()
    for _ in range(rounds):
        for name, run in variants.items():
            samples[name].append(run())
    return medians(samples)


class Setup:
    """One user with TOTP on and a live session, made through the middleware itself."""

    def __init__(self) -> None:
        self.clock = FrozenClock(T0)
        self.auth = make_auth(self.clock)
        self.asgi = BanataMiddleware(starlette_bare(), self.auth)
        self.session_cookie = ""
        self.device: VirtualAuthenticator | None = None

    async def enrol(self) -> None:
        scope, body = json_post("/api/auth/sign-up/email", {"email": "bench@example.com", "password": PASSWORD})
        status, headers, _ = await asgi_call(self.asgi, scope, body)
        assert status == 200
        self.session_cookie = "banata.session_token=" + cookie_value(headers, "banata.session_token")
        scope, body = json_post("/api/auth/two-factor/enable", {"password": PASSWORD}, self.session_cookie)
        status, _, out = await asgi_call(self.asgi, scope, body)
        assert status == 200, out
        self.device = VirtualAuthenticator.from_uri(json.loads(out)["totpURI"], clock=self.clock)
        scope, body = json_post("/api/auth/two-factor/verify-totp", {"code": self.device.code()}, self.session_cookie)
        status, headers, out = await asgi_call(self.asgi, scope, body)
        assert status == 200, out
        # Enrolment rotates the session: keep the new cookie.
        self.session_cookie = "banata.session_token=" + cookie_value(headers, "banata.session_token")

    def authenticated_headers(self) -> list[tuple[bytes, bytes]]:
        return [*BROWSER_HEADERS, (b"cookie", f"theme=dark; {self.session_cookie}; _ga=GA1.1.123".encode())]


async def bench_asgi(setup: Setup, rounds: int, n: int) -> dict[str, Timing]:
    bare = starlette_bare()
    banata = BanataMiddleware(starlette_bare(), setup.auth)
    basehttp = BaseHTTPMiddleware(starlette_bare(), dispatch=passthrough)
    scope = asgi_scope("GET", "/api/ping", setup.authenticated_headers())

    async def noop(scope: Any, receive: Any, send: Any) -> None:
        return None

    # Checks before timing: the same answer, and the middleware really authenticated the request.
    for app in (bare, banata, basehttp):
        status, _, body = await asgi_call(app, scope)
        assert (status, body) == (200, b'{"ok":true}'), (status, body)
    seen: list[Any] = []

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope.get("banata"))
        await bare(scope, receive, send)

    await asgi_call(BanataMiddleware(spy, setup.auth), scope)
    assert seen and seen[0] is not None and seen[0].aal == 2, seen
    anonymous = asgi_scope("GET", "/api/ping", BROWSER_HEADERS)
    assert (await asgi_call(banata, anonymous))[0] == 401

    variants = {"harness (no-op ASGI app)": noop, "bare Starlette endpoint": bare,
                "BanataMiddleware + endpoint": banata, "no-op BaseHTTPMiddleware + endpoint": basehttp}
    measured = with_metrics(setup.auth)
    if measured is not None:
        banata_metrics = BanataMiddleware(starlette_bare(), measured)
        assert (await asgi_call(banata_metrics, scope))[0] == 200
        variants["BanataMiddleware, metrics on + endpoint"] = banata_metrics
    # get-session (what the better-auth client polls), answered by the middleware itself.
    get_session = asgi_scope("GET", "/api/auth/get-session", setup.authenticated_headers())
    status, _, body = await asgi_call(banata, get_session)
    assert status == 200 and json.loads(body)["session"]["aal"] == 2, (status, body)
    variants["BanataMiddleware: get-session"] = banata
    scopes = {name: get_session if name.endswith("get-session") else scope for name in variants}
    samples: dict[str, list[Timing]] = {name: [] for name in variants}
    for name, app in variants.items():  # warm-up round, not counted
        await asgi_batch(app, scopes[name], n)
    for _ in range(rounds):
        for name, app in variants.items():
            samples[name].append(await asgi_batch(app, scopes[name], n))
    return medians(samples)


async def bench_asgi_verify(setup: Setup, count: int) -> dict[str, Timing]:
    """verify-totp through the middleware, one call at a time: sign-in challenge, then step-up."""
    assert setup.device is not None
    challenge_us: list[Timing] = []
    stepup_us: list[Timing] = []
    for _ in range(count):
        scope, body = json_post("/api/auth/sign-in/email", {"email": "bench@example.com", "password": PASSWORD})
        status, headers, out = await asgi_call(setup.asgi, scope, body)
        assert status == 403, out
        pending = "banata.two_factor=" + cookie_value(headers, "banata.two_factor")
        setup.clock.advance(30)
        scope, body = json_post("/api/auth/two-factor/verify-totp", {"code": setup.device.code()}, pending)
        start = _now()
        status, headers, out = await asgi_call(setup.asgi, scope, body)
        challenge_us.append(_per_request(start, 1))
        assert status == 200, out
        session = "banata.session_token=" + cookie_value(headers, "banata.session_token")
        setup.clock.advance(30)
        scope, body = json_post("/api/auth/two-factor/verify-totp", {"code": setup.device.code()}, session)
        start = _now()
        status, _, out = await asgi_call(setup.asgi, scope, body)
        stepup_us.append(_per_request(start, 1))
        assert status == 200 and json.loads(out)["status"] is True, out
    return medians({"verify-totp, sign-in challenge": challenge_us, "verify-totp, step-up": stepup_us})


def bench_wsgi(setup: Setup, rounds: int, n: int) -> dict[str, Timing]:
    bare = werkzeug_bare()
    banata = WsgiMiddleware(werkzeug_bare(), setup.auth)
    environ = wsgi_environ("GET", "/api/ping", setup.authenticated_headers())

    def noop(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    for app in (bare, banata):
        assert wsgi_call(app, environ) == (200, b'{"ok":true}')
    assert wsgi_call(banata, wsgi_environ("GET", "/api/ping", BROWSER_HEADERS))[0] == 401
    seen: list[Any] = []

    def spy(environ: Any, start_response: Any) -> Any:
        seen.append(environ.get("banata"))
        return bare(environ, start_response)

    wsgi_call(WsgiMiddleware(spy, setup.auth), environ)
    assert seen and seen[0] is not None and seen[0].aal == 2, seen
    variants = {
        "harness (no-op WSGI app)": lambda: wsgi_batch(noop, environ, n),
        "bare Werkzeug app": lambda: wsgi_batch(bare, environ, n),
        "WSGI BanataMiddleware + app": lambda: wsgi_batch(banata, environ, n),
    }
    measured = with_metrics(setup.auth)
    if measured is not None:
        banata_metrics = WsgiMiddleware(werkzeug_bare(), measured)
        assert wsgi_call(banata_metrics, environ) == (200, b'{"ok":true}')
        variants["WSGI BanataMiddleware, metrics on + app"] = lambda: wsgi_batch(banata_metrics, environ, n)
    return interleaved(variants, rounds)


def bench_wsgi_verify(setup: Setup, count: int) -> dict[str, Timing]:
    assert setup.device is not None
    app = WsgiMiddleware(werkzeug_bare(), setup.auth)
    challenge_us: list[Timing] = []
    stepup_us: list[Timing] = []

    def post(path: str, payload: Any, cookie: str = "") -> dict[str, Any]:
        scope, body = json_post(path, payload, cookie)
        return wsgi_environ("POST", path, scope["headers"], body)

    def call(environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        got: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            got.extend([status, headers])
            return lambda data: None

        result = app(environ, start_response)
        body = b"".join(result)
        if hasattr(result, "close"):
            result.close()
        return int(got[0].split()[0]), got[1], body

    def cookie(headers: list[tuple[str, str]], name: str) -> str:
        return cookie_value({"set-cookie": [v for k, v in headers if k.lower() == "set-cookie"]}, name)

    for _ in range(count):
        status, headers, out = call(post("/api/auth/sign-in/email", {"email": "bench@example.com",
                                                                      "password": PASSWORD}))
        assert status == 403, out
        setup.clock.advance(30)
        environ = post("/api/auth/two-factor/verify-totp", {"code": setup.device.code()},
                       "banata.two_factor=" + cookie(headers, "banata.two_factor"))
        start = _now()
        status, headers, out = call(environ)
        challenge_us.append(_per_request(start, 1))
        assert status == 200, out
        setup.clock.advance(30)
        environ = post("/api/auth/two-factor/verify-totp", {"code": setup.device.code()},
                       "banata.session_token=" + cookie(headers, "banata.session_token"))
        start = _now()
        status, _, out = call(environ)
        stepup_us.append(_per_request(start, 1))
        assert status == 200, out
    return medians({"verify-totp, sign-in challenge": challenge_us, "verify-totp, step-up": stepup_us})


# -- report ------------------------------------------------------------------------------------

def report_pass_through(title: str, results: dict[str, Timing], bare_name: str, middleware_name: str,
                        rounds: int, n: int) -> None:
    """Prints the table; the ratio is on CPU time (this process's thread), the wall time beside it
    shows how much the machine's other load stretched the run."""
    bare_cpu, bare_wall = results[bare_name]
    print(f"\n{title}\n  median of {rounds} interleaved rounds x {n} requests; µs per request, CPU (wall)")
    for name, (cpu, wall) in results.items():
        line = f"  {cpu:8.2f} ({wall:8.2f})  {name}"
        if not name.startswith("harness"):
            line += f"  {cpu / bare_cpu:.2f}x bare, +{cpu - bare_cpu:.2f} µs (wall {wall / bare_wall:.2f}x)"
        print(line)
    for name in (middleware_name, *(n for n in results if "metrics on" in n)):
        ratio = results[name][0] / bare_cpu
        print(f"  => {name} / bare = {ratio:.2f}x CPU (target <= 2x): {'OK' if ratio <= 2 else 'OVER'}")


def report_verify(title: str, results: dict[str, Timing], count: int) -> None:
    print(f"\n{title} (median of {count} single calls; µs, CPU (wall))")
    for name, (cpu, wall) in results.items():
        print(f"  {cpu:8.1f} ({wall:8.1f})  {name}")


def profile(kind: str, n: int) -> None:
    """cProfile of the middleware's authenticated pass-through (``kind``: asgi or wsgi)."""
    setup = Setup()
    asyncio.run(setup.enrol())
    prof = cProfile.Profile()
    if kind == "asgi":
        app = BanataMiddleware(starlette_bare(), setup.auth)
        scope = asgi_scope("GET", "/api/ping", setup.authenticated_headers())

        async def run() -> None:
            await asgi_batch(app, scope, n // 10)
            prof.enable()
            await asgi_batch(app, scope, n)
            prof.disable()

        asyncio.run(run())
    else:
        assert WsgiMiddleware is not None, "no WSGI adapter"
        app = WsgiMiddleware(werkzeug_bare(), setup.auth)
        environ = wsgi_environ("GET", "/api/ping", setup.authenticated_headers())
        wsgi_batch(app, environ, n // 10)
        prof.enable()
        wsgi_batch(app, environ, n)
        prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
    print(out.getvalue())


def breakdown(n: int = 20000, reps: int = 15) -> None:
    """Where the ASGI pass-through's time goes: each piece of ``BanataMiddleware`` timed on its own
    (median of ``reps`` loops of ``n`` calls, thread CPU µs per call)."""
    from banata_middleware.adapters.starlette import _ScopeHeaders
    from banata_middleware.effects import Op, run_sync
    from banata_middleware.http import NO_QUERY, Request

    setup = Setup()
    asyncio.run(setup.enrol())
    auth, flows, gateway = setup.auth, setup.auth.flows, setup.auth.gateway
    measured = with_metrics(auth)
    scope = asgi_scope("GET", "/api/ping", setup.authenticated_headers())
    raw = scope["headers"]

    def request() -> Request:  # as the adapter builds it
        return Request("GET", "/api/ping", _ScopeHeaders(raw, False), "127.0.0.1", NO_QUERY, None, False, "/api/ping",
                       False)

    step = gateway.step(request())
    assert type(step).__name__ == "GuardStep", step
    reply = auth.store.execute(step.op)

    class Canned:  # answers the guard op with the reply the memory store gave: the flow's own cost
        in_process = True

        def execute(self, op: Op) -> Any:
            return reply

        async def aexecute(self, op: Op) -> Any:
            return reply

    def timed_loop(fn: Callable[[], Any]) -> float:
        values = []
        for _ in range(reps):
            start = time.thread_time_ns()
            for _ in range(n):
                fn()
            values.append((time.thread_time_ns() - start) / n / 1000)
        return statistics.median(values)

    async def noop(scope: Any, receive: Any, send: Any) -> None:
        return None

    def asgi_loop(app: Any) -> float:
        return statistics.median(asyncio.run(asgi_batch(app, scope, n))[0] for _ in range(reps))

    canned = Canned()
    rows = [
        ("bare Starlette endpoint", asgi_loop(starlette_bare())),
        ("BanataMiddleware + endpoint", asgi_loop(BanataMiddleware(starlette_bare(), auth))),
        ("BanataMiddleware around a no-op app: the whole middleware", asgi_loop(BanataMiddleware(noop, auth))),
        ("  adapter: _ScopeHeaders(...) and Request(...)", timed_loop(request)),
        ("  gateway.step, with the adapter's: path checks, rule, guard_op (its ids kept by Cookie header)",
         timed_loop(lambda: gateway.step(request()))),
        ("    flows.guard_op alone (with the adapter's)", timed_loop(lambda: flows.guard_op(request()))),
        ("  MemoryStore.execute(guard) (read fast path, with the lock)",
         timed_loop(lambda: auth.store.execute(step.op))),
        ("    _read_guard itself", timed_loop(lambda: auth.store._read_guard(step.op))),
        ("  gateway.finish: flows.guarded and the admission", timed_loop(lambda: gateway.finish(step, reply))),
        ("    flows.guarded alone", timed_loop(lambda: flows.guarded(step.uid, step.sid, reply))),
        ("  (the same request through the gateway's flow, store answering at once)",
         timed_loop(lambda: run_sync(gateway.handle(request()), canned))),
    ]
    if measured is not None and measured.metrics is not None:
        metrics = measured.metrics
        rows += [
            ("BanataMiddleware, metrics on, around a no-op app", asgi_loop(BanataMiddleware(noop, measured))),
            ("  Metrics.observe_pass", timed_loop(lambda: metrics.observe_pass(0.00001, 0.000001))),
        ]
    print(f"ASGI pass-through, piece by piece (thread CPU µs per call, median of {reps} x {n})")
    for name, us in rows:
        print(f"  {us:7.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=101, help="interleaved rounds (default 101)")
    parser.add_argument("--requests", type=int, default=300, help="requests per variant per round (default 300)")
    parser.add_argument("--verifies", type=int, default=200, help="verify-totp calls timed (default 200)")
    parser.add_argument("--quick", action="store_true", help="3 rounds x 200 requests, 20 verifies")
    parser.add_argument("--profile", choices=("asgi", "wsgi"), help="profile the middleware's pass-through instead")
    parser.add_argument("--breakdown", action="store_true", help="time the ASGI pass-through piece by piece")
    args = parser.parse_args()
    if args.breakdown:
        breakdown()
        return
    if args.quick:
        args.rounds, args.requests, args.verifies = 5, 100, 20
    if args.profile:
        profile(args.profile, args.requests * 5)
        return

    print(f"bench_inprocess: Python {platform.python_version()} ({sys.implementation.name}), "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"  started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; memory store; asyncio event loop; no HTTP, no Redis")

    setup = Setup()
    asyncio.run(setup.enrol())
    asgi = asyncio.run(bench_asgi(setup, args.rounds, args.requests))
    report_pass_through("ASGI, authenticated GET to a trivial endpoint", asgi, "bare Starlette endpoint",
                        "BanataMiddleware + endpoint", args.rounds, args.requests)
    report_verify("ASGI verify-totp through the middleware", asyncio.run(bench_asgi_verify(setup, args.verifies)),
                  args.verifies)

    if WsgiMiddleware is None:
        print("\nWSGI: banata_middleware.adapters.werkzeug is not importable; skipped")
        return
    wsgi = bench_wsgi(setup, args.rounds, args.requests)
    report_pass_through("WSGI, authenticated GET to a trivial endpoint", wsgi, "bare Werkzeug app",
                        "WSGI BanataMiddleware + app", args.rounds, args.requests)
    report_verify("WSGI verify-totp through the middleware", bench_wsgi_verify(setup, args.verifies), args.verifies)


if __name__ == "__main__":
    main()

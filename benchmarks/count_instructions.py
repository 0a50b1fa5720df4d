"""Instructions per request of the pass-through, counted by valgrind's callgrind: the noise-free figure
beside ``bench_inprocess.py``'s timings (which a shared machine stretches by 30 % and more).

    python benchmarks/count_instructions.py              # every variant, one valgrind process each
    python benchmarks/count_instructions.py --requests 500

Each variant runs in its own process under ``valgrind --tool=callgrind``, with collection on only
inside ``sys.call_tracing`` (``--toggle-collect=_PyEval_CallTracing``): set-up, warm-up and imports
are not counted. The timed part is ``bench_inprocess.py``'s own loop (``asgi_batch`` driven to its end
without an event loop, since nothing in it suspends; ``wsgi_batch``) on the same apps, scope and
environ, after 50 warm-up requests. ``PYTHONHASHSEED=0`` keeps dict layouts the same between runs.
The harness's own loop (a no-op app) is counted too, so that it can be subtracted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from typing import Any

VARIANTS = ("asgi-harness", "asgi-bare", "asgi-banata", "asgi-banata-metrics", "asgi-banata-noop",
            "asgi-banata-metrics-noop", "wsgi-harness", "wsgi-bare", "wsgi-banata", "wsgi-banata-metrics")


def _app(variant: str) -> tuple[str, Any, Any]:
    """(kind, app, scope or environ) as bench_inprocess builds them."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_inprocess as b

    setup = b.Setup()
    asyncio.run(setup.enrol())
    kind, _, what = variant.partition("-")
    headers = setup.authenticated_headers()

    async def noop_asgi(scope: Any, receive: Any, send: Any) -> None:
        return None

    def noop_wsgi(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b""]

    if kind == "asgi":
        inner: Any = noop_asgi if what.endswith("noop") or what == "harness" else b.starlette_bare()
        auth = b.with_metrics(setup.auth) if "metrics" in what else setup.auth
        app = inner if what in ("harness", "bare") else b.BanataMiddleware(inner, auth)
        return kind, app, b.asgi_scope("GET", "/api/ping", headers)
    inner = noop_wsgi if what == "harness" else b.werkzeug_bare()
    auth = b.with_metrics(setup.auth) if "metrics" in what else setup.auth
    app = inner if what in ("harness", "bare") else b.WsgiMiddleware(inner, auth)
    return kind, app, b.wsgi_environ("GET", "/api/ping", headers)


def _drive(coroutine: Any) -> None:
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError("the request suspended: it needs an event loop")


def child(variant: str, n: int) -> None:
    import bench_inprocess as b

    kind, app, request = _app(variant)
    if kind == "asgi":
        _drive(b.asgi_batch(app, request, 50))
        sys.call_tracing(_drive, (b.asgi_batch(app, request, n),))
    else:
        b.wsgi_batch(app, request, 50)
        sys.call_tracing(b.wsgi_batch, (app, request, n))


def count(variant: str, n: int) -> float:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    for _ in range(3):
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", "--toggle-collect=_PyEval_CallTracing",
             sys.executable, os.path.abspath(__file__), "--child", variant, "--requests", str(n)],
            env=env, capture_output=True, text=True, check=True)
        found = re.search(r"Collected\s*:\s*(\d+)", out.stderr)
        if found is None:
            raise RuntimeError(out.stderr[-2000:])
        if int(found.group(1)):  # once in a while callgrind reports 0 collected (seen once): run it again
            return int(found.group(1)) / n
    raise RuntimeError(f"{variant}: callgrind collected nothing three times")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests counted per variant (default 300)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("variants", nargs="*", help=f"default: all of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    if args.child:
        child(args.child, args.requests)
        return
    got = {v: count(v, args.requests) for v in (args.variants or VARIANTS)}
    print(f"instructions per request (callgrind, {args.requests} requests, PYTHONHASHSEED=0)")
    for name, ir in got.items():
        print(f"  {ir:10.0f}  {name}")
    for kind in ("asgi", "wsgi"):
        bare = got.get(f"{kind}-bare")
        if bare is None:
            continue
        for v in (f"{kind}-banata", f"{kind}-banata-metrics"):
            if v in got:
                print(f"  => {v} / {kind}-bare = {got[v] / bare:.3f}")


if __name__ == "__main__":
    main()

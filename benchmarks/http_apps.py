"""The servers ``bench_http.py`` measures: the demo app behind the middleware, plus bare endpoints.

One process serves both, so the middleware and its references share the server, the stores and
their connection pools; only ``/bench/*`` bypasses the middleware. Configured by the environment
(the benchmark starts the servers itself):

- ``BENCH_REDIS_URL``: the Redis hot store (``RedisStore.from_url``); empty: the in-process memory store;
- ``BENCH_DATABASE_URL``: the record store (a PostgreSQL database whose schema is current, or a SQLite
  file, which creates its own schema);
- ``BENCH_SECRET``, ``BENCH_SITE_URL``: the app secret and the site's origin;
- ``BENCH_REDIS_TIMEOUT``: the Redis store's timeout in seconds (default 1, as ``from_url``).

ASGI: ``uvicorn --factory benchmarks.http_apps:asgi_app``. WSGI: ``python -m benchmarks.http_apps
--port N``: waitress (a production WSGI server: keep-alive, a pool of worker threads), or with
``--server werkzeug`` Werkzeug's threaded server, which answers ``Connection: close`` to every request
(so each request also costs a TCP connect and a thread start, on every variant alike).

The bare endpoints (no middleware, no cookie parsing, no crypto):

- ``GET /bench/one-get``: one Redis GET (memory setup: nothing), a small JSON reply: the reference
  for the pass-through and get-session;
- ``POST /bench/verify?u=UID``: the store work of a verify-totp by hand, in the same order: one Redis
  round trip reading the user's hash and a challenge hash (the middleware's ``load``), the SQL lookup
  (``LoadUser``), the conditional update of the replay guard with its audit row in one transaction
  (``AcceptTotpStep``), one Redis round trip deleting a challenge and writing a session hash with its
  expiry. Same ``RecordStore`` and Redis clients as the middleware's. The step it accepts is the
  stored one + 1 (read-then-write: fine here, as the client never sends one bare user twice at once);
- ``POST /bench/seed-totp``, ``/bench/seed-bare``, ``/bench/challenges``, ``/bench/sessions``: seeding,
  through the public API (``import_totp``, ``begin_second_factor``) or the record operations, never
  timed. They exist because the memory store lives in the server process;
- ``GET /bench/gc``: the garbage collections since the last call (``GcWatch``); ``POST /bench/gc``
  ``{"freeze": true}``: ``gc.collect()`` + ``gc.freeze()`` (``false``: ``gc.unfreeze()``). Never timed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import time
from collections.abc import Iterable
from typing import Any

from banata_middleware import BanataAuth
from banata_middleware.demo.app import demo_config
from banata_middleware.stores import MemoryStore, RedisStore
from banata_middleware.stores.records import (
    AcceptTotpStep,
    AuditEntry,
    EnableTotp,
    LoadUser,
    RecordStore,
    Status,
)

__all__ = ["asgi_app", "build_auth", "wsgi_app"]

PREFIX = "/bench/"
ONE_GET_KEY = "bench:{u:bare}:one"
PROTECTED_OK = "/protected/ok"  # a protected path (demo_config protects by default)
# What the bare endpoints keep per user: a hash like the middleware's read-through copy, a pending
# challenge, and sessions; the values are of the same size as the real ones.
USER_FIELDS = {"rec": "1", "tfa": "1", "email": "", "name": "", "created": "", "gen": "0", "revoked_at": "0",
               "codes_kid": "k1"}
CHALLENGE_FIELDS = {"created": "1800000000000", "exp": "1800000300000", "remember": "1", "attempts": "0",
                    "methods": "totp backup"}
SESSION_TTL = 7 * 24 * 3600
_OK = b'{"ok":true}'


def user_key(uid: str) -> str:
    return f"bench:{{u:{uid}}}:user"


def challenge_key(uid: str, cid: str = "c") -> str:
    return f"bench:{{u:{uid}}}:ch:{cid}"


def session_key(uid: str, sid: str) -> str:
    return f"bench:{{u:{uid}}}:s:{sid}"


class GcWatch:
    """The server's garbage collections per generation (count, summed and longest pause), read and
    reset by ``GET /bench/gc`` after each round, so that the benchmark can say which variant paid for
    which collection. A gen 2 collection walks every tracked object of the process (SQLAlchemy,
    Starlette, the demo: about 10^5 of them) and stops every request meanwhile: a tail, unless the
    objects made at start-up are frozen first (``POST /bench/gc {"freeze": true}``: ``gc.freeze()``,
    as a pre-fork server does after importing its app). One process serves every variant, so the
    setting is the same for the middleware and its bare references."""

    def __init__(self) -> None:
        self._start = 0.0
        self.reset()
        gc.callbacks.append(self._observe)

    def reset(self) -> None:
        self.counts = [0, 0, 0]
        self.pauses = [0.0, 0.0, 0.0]
        self.longest = 0.0

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        pause = time.perf_counter() - self._start
        generation = info["generation"]
        self.counts[generation] += 1
        self.pauses[generation] += pause
        self.longest = max(self.longest, pause)

    def read(self) -> bytes:
        """The figures since the last read, as JSON, then reset."""
        body = json.dumps({"counts": self.counts, "pause_ms": [p * 1000 for p in self.pauses],
                           "longest_ms": self.longest * 1000}).encode()
        self.reset()
        return body

    @staticmethod
    def freeze(wanted: bool) -> bytes:
        """``gc.collect()`` then ``gc.freeze()`` (wanted), else ``gc.unfreeze()``; the tracked objects left."""
        if wanted:
            gc.collect()
            gc.freeze()
        else:
            gc.unfreeze()
        return json.dumps({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}).encode()


def build_auth(env: dict[str, str] | None = None) -> BanataAuth:
    e = os.environ if env is None else env
    config = demo_config(secret=e["BENCH_SECRET"], site_url=e["BENCH_SITE_URL"])
    redis_url = e.get("BENCH_REDIS_URL", "")
    # BENCH_REDIS_TIMEOUT: count_http_instructions.py runs Redis under valgrind, far slower than 1 s allows.
    timeout = float(e.get("BENCH_REDIS_TIMEOUT") or 1.0)
    store = RedisStore.from_url(redis_url, timeout=timeout) if redis_url else MemoryStore(config.clock)
    # Always both stores: a Redis hot store without a record store is refused.
    return BanataAuth(config, store=store, records=e["BENCH_DATABASE_URL"])


def _session_fields(uid: str, now: int) -> dict[str, str]:
    return {"uid": uid, "created": str(now), "exp": str(now + SESSION_TTL * 1000), "aal": "2", "mfa": str(now),
            "remember": "1", "amr": "pwd otp", "seen": str(now)}


def _audit(now: int, user_agent: str, ip: str, sid: str) -> tuple[AuditEntry, ...]:
    return (AuditEntry("two_factor.verified", now, ip, user_agent[:256], sid, {"detail": "totp"}),)


def _bare_factor_op(uid: str, now: int) -> EnableTotp:
    # A factor row like a real one, written as ``import_totp`` writes the middleware's users' (the
    # secret is ciphertext-sized; the bare endpoint never decrypts it).
    ct = secrets.token_urlsafe(60)
    return EnableTotp(uid, "totp", ct, "k1", now, 0, [], "", replace=True)


def _verify_reply(uid: str, token: str) -> bytes:
    return json.dumps({"token": token, "user": {"id": uid, "email": "", "name": "", "twoFactorEnabled": True}}
                      ).encode()


# -- ASGI -----------------------------------------------------------------------------------------
def asgi_app() -> Any:
    """uvicorn ``--factory`` entry: the demo behind the ASGI middleware, ``/bench/*`` beside it."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.types import Receive, Scope, Send

    from banata_middleware.adapters.starlette import BanataMiddleware
    from banata_middleware.demo.app import starlette_app

    auth = build_auth()
    records: RecordStore = auth.records
    hot = auth.store
    client = hot.aio if isinstance(hot, RedisStore) else None
    memory: dict[str, dict[str, str]] = {}  # the memory setup's bare hot state
    demo = starlette_app(auth)
    watch = GcWatch()

    async def gc_read(request: Request) -> Response:
        return Response(watch.read(), media_type="application/json")

    async def gc_freeze(request: Request) -> Response:
        return Response(watch.freeze(bool((await request.json())["freeze"])), media_type="application/json")

    async def one_get(request: Request) -> Response:
        if client is not None:
            await client.get(ONE_GET_KEY)
        return Response(_OK, media_type="application/json")

    async def verify(request: Request) -> Response:
        await request.json()
        uid = request.query_params["u"]
        if client is not None:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(user_key(uid))
            pipe.hgetall(challenge_key(uid))
            await pipe.execute()
        else:
            memory.get(user_key(uid)), memory.get(challenge_key(uid))
        record = await records.aexecute(LoadUser(uid))
        factor = record.totp[0]
        now = int(time.time() * 1000)
        token, sid = secrets.token_urlsafe(32), secrets.token_hex(16)
        ip = request.client.host if request.client else ""
        audit = _audit(now, request.headers.get("user-agent", ""), ip, sid)
        status = await records.aexecute(AcceptTotpStep(uid, factor.id, factor.secret, factor.last_step + 1, audit))
        if status is not Status.ACCEPTED:
            return JSONResponse({"code": status.value}, status_code=409)
        # SQL first, then the hot store, as the middleware orders it.
        if client is not None:
            pipe = client.pipeline(transaction=False)
            pipe.delete(challenge_key(uid, sid))
            pipe.hset(session_key(uid, sid), mapping=_session_fields(uid, now))
            pipe.expire(session_key(uid, sid), SESSION_TTL)
            await pipe.execute()
        else:
            memory.pop(challenge_key(uid, sid), None)
            memory[session_key(uid, sid)] = _session_fields(uid, now)
        return Response(_verify_reply(uid, token), media_type="application/json")

    async def seed_totp(request: Request) -> Response:
        for uid, secret in (await request.json())["users"]:
            await auth.aimport_totp(uid, secret)
        return Response(_OK, media_type="application/json")

    async def seed_bare(request: Request) -> Response:
        now = int(time.time() * 1000)
        for uid in (await request.json())["users"]:
            await records.aexecute(_bare_factor_op(uid, now))
            if client is not None:
                await client.hset(user_key(uid), mapping=USER_FIELDS)
                await client.hset(challenge_key(uid), mapping=CHALLENGE_FIELDS)
            else:
                memory[user_key(uid)], memory[challenge_key(uid)] = dict(USER_FIELDS), dict(CHALLENGE_FIELDS)
        if client is not None:
            await client.set(ONE_GET_KEY, "x" * 200)
        return Response(_OK, media_type="application/json")

    async def begin(request: Request) -> Response:
        cookies = []
        for uid in (await request.json())["users"]:
            result = await auth.abegin_second_factor(uid)
            cookies.append(result.set_cookies[0].split(";", 1)[0])
        return JSONResponse({"cookies": cookies})

    bare = Starlette(routes=[
        Route(PREFIX + "one-get", one_get, methods=["GET"]),
        Route(PREFIX + "verify", verify, methods=["POST"]),
        Route(PREFIX + "seed-totp", seed_totp, methods=["POST"]),
        Route(PREFIX + "seed-bare", seed_bare, methods=["POST"]),
        Route(PREFIX + "challenges", begin, methods=["POST"]),
        Route(PREFIX + "sessions", begin, methods=["POST"]),
        Route(PREFIX + "gc", gc_read, methods=["GET"]),
        Route(PREFIX + "gc", gc_freeze, methods=["POST"]),
    ])

    async def protected_ok(request: Request) -> Response:
        return Response(_OK, media_type="application/json")

    # The bare 1-GET's twin behind the middleware: the same reply, no store call of its own (the
    # middleware's guard makes the one round trip), so the two differ by the middleware alone.
    protected = BanataMiddleware(Starlette(routes=[Route(PROTECTED_OK, protected_ok, methods=["GET"])]), auth)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await bare(scope, receive, send)
        elif scope["path"] == PROTECTED_OK:
            await protected(scope, receive, send)
        else:
            await demo(scope, receive, send)

    return app


# -- WSGI -----------------------------------------------------------------------------------------
def wsgi_app() -> Any:
    """The demo behind the WSGI (Werkzeug) middleware, ``/bench/*`` beside it."""
    from werkzeug.wrappers import Request, Response

    from banata_middleware.adapters.werkzeug import BanataMiddleware as BanataWsgiMiddleware
    from banata_middleware.demo.wsgi import werkzeug_app

    auth = build_auth()
    records: RecordStore = auth.records
    hot = auth.store
    client = hot.sync if isinstance(hot, RedisStore) else None
    memory: dict[str, dict[str, str]] = {}
    demo = werkzeug_app(auth)
    watch = GcWatch()

    def ok(body: bytes = _OK, status: int = 200) -> Response:
        return Response(body, status=status, mimetype="application/json")

    def one_get(request: Request) -> Response:
        if client is not None:
            client.get(ONE_GET_KEY)
        return ok()

    def verify(request: Request) -> Response:
        json.loads(request.get_data())
        uid = request.args["u"]
        if client is not None:
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(user_key(uid))
            pipe.hgetall(challenge_key(uid))
            pipe.execute()
        else:
            memory.get(user_key(uid)), memory.get(challenge_key(uid))
        record = records.execute(LoadUser(uid))
        factor = record.totp[0]
        now = int(time.time() * 1000)
        token, sid = secrets.token_urlsafe(32), secrets.token_hex(16)
        audit = _audit(now, request.headers.get("user-agent", ""), request.remote_addr or "", sid)
        status = records.execute(AcceptTotpStep(uid, factor.id, factor.secret, factor.last_step + 1, audit))
        if status is not Status.ACCEPTED:
            return ok(json.dumps({"code": status.value}).encode(), 409)
        # SQL first, then the hot store, as the middleware orders it.
        if client is not None:
            pipe = client.pipeline(transaction=False)
            pipe.delete(challenge_key(uid, sid))
            pipe.hset(session_key(uid, sid), mapping=_session_fields(uid, now))
            pipe.expire(session_key(uid, sid), SESSION_TTL)
            pipe.execute()
        else:
            memory.pop(challenge_key(uid, sid), None)
            memory[session_key(uid, sid)] = _session_fields(uid, now)
        return ok(_verify_reply(uid, token))

    def seed_totp(request: Request) -> Response:
        for uid, secret in json.loads(request.get_data())["users"]:
            auth.import_totp(uid, secret)
        return ok()

    def seed_bare(request: Request) -> Response:
        now = int(time.time() * 1000)
        for uid in json.loads(request.get_data())["users"]:
            records.execute(_bare_factor_op(uid, now))
            if client is not None:
                client.hset(user_key(uid), mapping=USER_FIELDS)
                client.hset(challenge_key(uid), mapping=CHALLENGE_FIELDS)
            else:
                memory[user_key(uid)], memory[challenge_key(uid)] = dict(USER_FIELDS), dict(CHALLENGE_FIELDS)
        if client is not None:
            client.set(ONE_GET_KEY, "x" * 200)
        return ok()

    def begin(request: Request) -> Response:
        cookies = [auth.begin_second_factor(uid).set_cookies[0].split(";", 1)[0]
                   for uid in json.loads(request.get_data())["users"]]
        return ok(json.dumps({"cookies": cookies}).encode())

    def gc_read(request: Request) -> Response:
        return ok(watch.read())

    def gc_freeze(request: Request) -> Response:
        return ok(watch.freeze(bool(json.loads(request.get_data())["freeze"])))

    views = {("GET", "one-get"): one_get, ("POST", "verify"): verify, ("POST", "seed-totp"): seed_totp,
             ("POST", "seed-bare"): seed_bare, ("POST", "challenges"): begin, ("POST", "sessions"): begin,
             ("GET", "gc"): gc_read, ("POST", "gc"): gc_freeze}

    def protected_ok(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return ok()(environ, start_response)

    # The bare 1-GET's twin behind the middleware (see ``asgi_app``).
    protected = BanataWsgiMiddleware(protected_ok, auth)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX):
            view = views.get((environ.get("REQUEST_METHOD", "GET"), path[len(PREFIX):]))
            response = view(Request(environ)) if view else ok(b'{"code":"NOT_FOUND"}', 404)
            return response(environ, start_response)
        if path == PROTECTED_OK:
            return protected(environ, start_response)
        return demo(environ, start_response)

    return app


def main(argv: list[str] | None = None) -> int:
    """Serve ``wsgi_app()`` until SIGTERM: on waitress (keep-alive, a pool of ``--threads`` worker
    threads), or on Werkzeug's threaded server (a thread per connection, and it closes every one)."""
    import signal

    parser = argparse.ArgumentParser(prog="python -m benchmarks.http_apps")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=["waitress", "werkzeug"], default="waitress")
    parser.add_argument("--threads", type=int, default=8, help="waitress worker threads")
    args = parser.parse_args(argv)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    app = wsgi_app()
    if args.server == "waitress":
        import waitress.server

        served = waitress.server.create_server(app, host=args.host, port=args.port, threads=args.threads,
                                               backlog=4096, connection_limit=1000)
        try:
            served.run()
        except KeyboardInterrupt:
            pass
        finally:
            served.close()
        return 0
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    server = make_server(args.host, args.port, app, threaded=True, request_handler=QuietHandler)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

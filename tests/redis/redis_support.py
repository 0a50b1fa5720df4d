"""Helpers for the Redis suite: the demo app on a RedisStore, a browser-like client, firing requests
at once, and reading every key of a Redis database.

Kept out of a ``conftest.py`` on purpose: ``tests/redis`` is not a package (a package named ``redis``
would shadow redis-py), and a second non-package ``conftest`` module would fight ``tests/conftest.py``
for the name ``conftest``. Test modules import this module by name.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
import redis
from harness import knob, one_worker_at_a_time
from servers import SERVER_KINDS, serve

from banata_middleware import BanataAuth, OtpConfig, PasswordHashing, Policies
from banata_middleware.demo.app import demo_config, starlette_app
from banata_middleware.effects import Op
from banata_middleware.otp import Inbox
from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.clocks import FrozenClock
from banata_middleware.stores import RedisStore
from banata_middleware.stores.hot_ops import Load, LoadReply
from banata_middleware.stores.records import ListAudit, RecordStore

# The app is configured for this site; clients send it as Origin (the CSRF check on cookie-carrying POSTs).
SITE = "http://testserver"
SECRET = "redis-suite-secret-" + "r" * 40
PASSWORD = "correct horse battery staple"
# 10 s into a TOTP step, as in tests/conftest.py.
T0 = 1_800_000_010
STORE_TIMEOUT = 1.0
# Rounds of each race (tests/redis/test_races*.py). Odd rounds force the worst schedule (every
# request reads before any commits: RecordingRedisStore.race), so a few rounds already show an
# atomic commit is what stops all but one; even rounds add whatever schedule the server gives.
# CI runs 10; BANATA_RACE_ROUNDS (or BANATA_TEST_DEPTH=deep: 100) hunts longer for an unlucky
# natural schedule.
RACE_ROUNDS = max(2, knob("BANATA_RACE_ROUNDS", 10, 100))
# The test servers speak plain HTTP; sharing one TLS context saves the ~45 ms httpx spends building
# one (with the CA bundle) for every new client.
_TLS = ssl.create_default_context()


class RecordingRedisStore(RedisStore):
    """The real RedisStore, keeping the replies of ``load`` (the read a request decides on). A race
    test uses them to show its window was really open: several requests read a state in which the
    code or the challenge was still unused, so only the atomic commit could stop all but one.

    ``race(n)`` forces the worst schedule instead of waiting for luck: each ``load`` returns only once
    ``n`` loads have finished (or after 2 s), so every request has read before any of them commits.
    The scripts still run on the real Redis; only their order is chosen.
    """

    HOLD_LIMIT = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loads: list[LoadReply] = []
        self.hold_until = 0

    def race(self, n: int) -> None:
        """Start a round: forget the loads seen so far; ``n > 0`` holds reads until ``n`` have happened."""
        self.loads.clear()
        self.hold_until = n

    def _holding(self, deadline: float) -> bool:
        return len(self.loads) < self.hold_until and time.monotonic() < deadline

    def execute(self, op: Op) -> Any:
        reply = super().execute(op)
        if type(op) is Load:
            self.loads.append(reply)
            deadline = time.monotonic() + self.HOLD_LIMIT
            while self._holding(deadline):
                time.sleep(0.001)
        return reply

    async def aexecute(self, op: Op) -> Any:
        reply = await super().aexecute(op)
        if type(op) is Load:
            self.loads.append(reply)
            deadline = time.monotonic() + self.HOLD_LIMIT
            while self._holding(deadline):
                await asyncio.sleep(0.001)
        return reply

    def loaded_users(self) -> list[dict[str, str]]:
        return [reply.user for reply in self.loads]


def build_app(kind: str, *, redis_url: str, database_url: str, clock: FrozenClock, timeout: float = STORE_TIMEOUT,
              **overrides: Any) -> tuple[BanataAuth, RecordingRedisStore, Any]:
    """The demo app for ``kind`` ("asgi" Starlette, "wsgi" Werkzeug) on a RedisStore at ``redis_url``
    (clients made by ``RedisStore.from_url``) and the record store at ``database_url`` (the
    ``database_url`` fixture)."""
    overrides.setdefault("password_hashing", PasswordHashing(n=2**8))
    # Every browser of these suites signs up and signs in from 127.0.0.1 on one Redis under a frozen
    # clock: lift the per-address sign-up and password-check/passkey sign-in counts
    # (tests/contract/test_sign_up_throttle.py and tests/adversarial/test_review_r3.py test them).
    overrides.setdefault("policies", Policies(sign_up_per_address=100_000, password_hashes_per_address=100_000,
                                              passkey_sign_ins_per_address=100_000))
    config = demo_config(secret=SECRET, site_url=SITE, clock=clock, **overrides)
    fresh = RedisStore.from_url(redis_url, timeout=timeout)
    store = RecordingRedisStore(fresh.sync, fresh.aio)
    auth = BanataAuth(config, store=store, records=database_url)
    if kind == "asgi":
        app = starlette_app(auth)
    else:
        from banata_middleware.demo.wsgi import werkzeug_app

        app = werkzeug_app(auth)
    return auth, store, app


@dataclass
class Browser:
    """A browser-like client: one cookie jar, the site's Origin, the auth paths by name. Remembers
    every Set-Cookie value and response token it was given (for the secrets-at-rest scan)."""

    http: httpx.Client
    clock: FrozenClock
    device: VirtualAuthenticator | None = None
    backup_codes: list[str] = field(default_factory=list)
    seen_tokens: set[str] = field(default_factory=set)

    @classmethod
    def at(cls, base_url: str, clock: FrozenClock) -> Browser:
        return cls.over(httpx.Client(base_url=base_url, timeout=10, verify=_TLS), clock)

    @classmethod
    def over(cls, client: httpx.Client, clock: FrozenClock) -> Browser:
        client.headers["origin"] = SITE
        browser = cls(client, clock)
        client.event_hooks["response"].append(browser._remember)
        return browser

    def _remember(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            value = header.split(";", 1)[0].partition("=")[2]
            if value:
                self.seen_tokens.add(value)

    def twin(self) -> Browser:
        """A second browser holding the same cookies (one user, two tabs racing)."""
        other = Browser.at(str(self.http.base_url), self.clock)
        for cookie in self.http.cookies.jar:
            other.http.cookies.jar.set_cookie(cookie)
        other.device = self.device
        assert other.get("/").status_code == 200  # opens its connection now, not in the race
        return other

    def close(self) -> None:
        self.http.close()

    # -- requests ---------------------------------------------------------------------------
    def auth(self, path: str, json: Any = None) -> httpx.Response:
        r = self.http.post("/api/auth" + path, json=json)
        if r.headers.get("content-type", "").startswith("application/json") and r.content:
            body = r.json()
            if isinstance(body, dict) and isinstance(body.get("token"), str):
                self.seen_tokens.add(body["token"])
        return r

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def sign_up(self, email: str) -> httpx.Response:
        r = self.auth("/sign-up/email", {"email": email, "password": PASSWORD, "name": "Race Tester"})
        assert r.status_code == 200, r.text
        return r

    def sign_in(self, email: str, **extra: Any) -> httpx.Response:
        return self.auth("/sign-in/email", {"email": email, "password": PASSWORD, **extra})

    def enable_2fa(self) -> VirtualAuthenticator:
        """``enable`` then confirm with the virtual authenticator (the phone app that read the QR code)."""
        r = self.auth("/two-factor/enable", {"password": PASSWORD})
        assert r.status_code == 200, r.text
        self.backup_codes = r.json()["backupCodes"]
        self.device = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=self.clock)
        r = self.verify_totp(self.device.code())
        assert r.status_code == 200, r.text
        assert r.json()["user"]["twoFactorEnabled"] is True
        return self.device

    def code(self) -> str:
        assert self.device is not None
        return self.device.code()

    def verify_totp(self, code: str, **extra: Any) -> httpx.Response:
        return self.auth("/two-factor/verify-totp", {"code": code, **extra})

    def verify_backup(self, code: str, **extra: Any) -> httpx.Response:
        return self.auth("/two-factor/verify-backup-code", {"code": code, **extra})


def at_once(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Runs every call in its own thread, all released by one barrier; answers in call order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


def user_keys(client: redis.Redis, user_id: str) -> Iterator[str]:
    yield from client.scan_iter(match=f"banata:{{u:{user_id}}}:*")


def strong_sessions(client: redis.Redis, user_id: str) -> int:
    """The user's sessions that passed a second factor (aal 2)."""
    return sum(1 for key in user_keys(client, user_id)
               if ":s:" in key and client.hget(key, "aal") == "2")


def dump_database(client: redis.Redis) -> dict[bytes, list[bytes]]:
    """Every key with every piece of its value as bytes, whatever the type (``client`` must not
    decode responses)."""
    out: dict[bytes, list[bytes]] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        parts: list[bytes] = []
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "hash":
            for f, v in client.hgetall(key).items():
                parts += [f, v]
        elif kind == "set":
            parts += list(client.smembers(key))
        elif kind == "zset":
            for member, score in client.zrange(key, 0, -1, withscores=True):
                parts += [member, str(score).encode()]
        elif kind == "list":
            parts += list(client.lrange(key, 0, -1))
        elif kind == "stream":
            for entry_id, fields in client.xrange(key):
                parts.append(entry_id)
                for f, v in fields.items():
                    parts += [f, v]
        else:
            raise AssertionError(f"unexpected Redis type {kind!r} at {key!r}")
        out[key] = parts
    return out


# -- one live app for the race suites (test_races*.py) ------------------------------------------

@dataclass
class Live:
    """The demo app served by a real server (uvicorn or Werkzeug's) on a recording RedisStore and
    PostgreSQL, with what a race test reads: the hot store (``redis``, decoding), the record store,
    the in-memory inbox (codes by message, when the app was built with ``otp=True``). A race suite
    subclasses it for helpers of its own, and makes its fixture with ``live_fixture``."""

    base_url: str
    clock: FrozenClock
    store: RecordingRedisStore
    redis: redis.Redis
    auth: BanataAuth
    inbox: Inbox
    browsers: list[Browser] = field(default_factory=list)

    @property
    def records(self) -> RecordStore:
        return self.auth.records

    def browser(self) -> Browser:
        """A new browser, closed with the app."""
        b = Browser.at(self.base_url, self.clock)
        self.browsers.append(b)
        return b

    def twin(self, b: Browser) -> Browser:
        other = b.twin()
        self.browsers.append(other)
        return other

    def user(self, prefix: str = "race") -> tuple[Browser, str, str]:
        """A fresh user, signed up and signed in: (browser, email, id)."""
        b = self.browser()
        email = f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"
        uid = b.sign_up(email).json()["user"]["id"]
        return b, email, uid

    def events(self, uid: str) -> list[str]:
        """The record changes' events (SQL audit rows, in their order), then the hot store's."""
        return ([e.type for e in self.records.execute(ListAudit(uid))]
                + [fields["type"] for _, fields in self.redis.xrange(f"banata:{{u:{uid}}}:audit")])

    def copy(self, uid: str) -> dict[str, str]:
        """The hot store's copy of the user's state (``tfa``, ``gen``, ...)."""
        return dict(self.redis.hgetall(f"banata:{{u:{uid}}}:user"))

    def race(self, round_no: int, calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
        """Fires ``calls`` at once; odd rounds force every read before any commit."""
        self.store.race(len(calls) if round_no % 2 else 0)
        try:
            return at_once(calls)
        finally:
            self.store.hold_until = 0


L = TypeVar("L", bound=Live)


@contextmanager
def live_app(kind: str, *, redis_url: str, database_url: str, cls: type[L], otp: bool = False,
             **overrides: Any) -> Iterator[L]:
    """``build_app(kind)`` served on a free port for the length of the block (``kind``: "asgi" or
    "wsgi"); every browser made through the ``Live`` is closed after it."""
    clock = FrozenClock(T0)
    inbox = Inbox()
    if otp:
        overrides["otp"] = OtpConfig(sender=inbox)
    auth, store, app = build_app(kind, redis_url=redis_url, database_url=database_url, clock=clock, **overrides)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with serve(app, kind) as base_url:
            state = cls(base_url, clock, store, client, auth, inbox)
            try:
                yield state
            finally:
                for b in state.browsers:
                    b.close()
    finally:
        client.close()
        store.close()


def live_fixture(cls: type[Live] = Live, *, otp: bool = False) -> Any:
    """A race module's ``live`` fixture, over both servers: ``live = live_fixture(MyLive, otp=True)``."""

    @pytest.fixture(params=SERVER_KINDS)
    def live(request: pytest.FixtureRequest, redis_url: str, database_url: str) -> Iterator[Live]:
        # Both servers race many callers against PostgreSQL: one worker's race at a time (harness).
        with one_worker_at_a_time("postgres-races"), \
                live_app(request.param, redis_url=redis_url, database_url=database_url, cls=cls, otp=otp) as state:
            yield state

    return live

"""Fail closed: with Redis stopped or paused, protected paths and the verify endpoints answer
503 STORE_UNAVAILABLE (with a message) within a bounded time, never 200 or 500; when Redis is back the
same app, not restarted, works again, and the refused attempts left nothing behind.

Through real servers (uvicorn; Werkzeug's threaded server when the WSGI adapter exists) on a Redis of
our own with an append-only file, so the data outlives the restart and the same cookies work again;
and in-process (the suite's stacks) on the session Redis, where the restart loses the data and the user
is created again.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from redis_support import T0, Browser, at_once, build_app, timed
from servers import SERVER_KINDS, serve

from banata_middleware.simulator.clocks import FrozenClock

pytestmark = pytest.mark.redis

BOUND = 3.0  # seconds: the store timeout is 1 s; an answer must come well before a client gives up
IN_PROCESS = [pytest.param((kind, "redis"), id=f"{kind}-redis") for kind in SERVER_KINDS]


@pytest.fixture(scope="module")
def aof_redis(redis_server: Any) -> Iterator[Any]:
    """A private redis-server that keeps its data across a restart (append-only file)."""
    server = type(redis_server)(appendonly=True)  # tests/conftest.py's RedisServer
    yield server
    server.stop()


@dataclass
class Scene:
    """A user with TOTP on: ``owner`` holds a session (AAL2), ``pending`` passed the password and owes
    the second factor; ``code`` and ``backup`` are valid and unused."""

    owner: Browser
    pending: Browser
    new_browser: Callable[[], Browser]
    clock: FrozenClock
    email: str = ""
    code: str = ""
    backup: str = ""
    browsers: list[Browser] = field(default_factory=list)

    @classmethod
    def build(cls, new_browser: Callable[[], Browser], clock: FrozenClock) -> Scene:
        owner, pending = new_browser(), new_browser()
        email = f"down-{uuid.uuid4().hex[:12]}@example.com"
        owner.sign_up(email)
        owner.enable_2fa()
        r = pending.sign_in(email)
        assert r.status_code == 403, r.text
        clock.advance(30)  # a step the enrolment did not use
        return cls(owner, pending, new_browser, clock, email, owner.code(), owner.backup_codes[0])

    def requests(self) -> dict[str, Callable[[], httpx.Response]]:
        """What must fail closed while the store is away."""
        stranger = self.new_browser()
        return {
            "protected GET": lambda: self.owner.get("/api/me"),
            "protected HTML navigation": lambda: self.owner.get("/dashboard", headers={"accept": "text/html"}),
            "fresh-second-factor POST": lambda: self.owner.http.post("/api/sensitive"),
            "get-session": lambda: self.owner.get("/api/auth/get-session"),
            "verify-totp (sign-in challenge)": lambda: self.pending.verify_totp(self.code),
            "verify-backup-code (sign-in challenge)": lambda: self.pending.verify_backup(self.backup),
            "verify-totp (step-up)": lambda: self.owner.verify_totp(self.code),
            "sign-in": lambda: stranger.sign_in(self.email),
        }

    def works_again(self) -> None:
        """Everything answers as before; the refused attempts consumed neither code nor challenge."""
        me = self.owner.get("/api/me")
        assert me.status_code == 200 and me.json()["aal"] == 2, me.text
        r = self.pending.verify_totp(self.code)
        assert r.status_code == 200, r.text
        assert self.pending.get("/api/me").json()["aal"] == 2
        assert self.owner.get("/").status_code == 200


def _assert_store_unavailable(name: str, r: httpx.Response, seconds: float) -> None:
    assert r.status_code == 503, f"{name}: {r.status_code} {r.text}"
    body = r.json()
    assert body["code"] == "STORE_UNAVAILABLE", f"{name}: {body}"
    assert isinstance(body.get("message"), str) and body["message"], f"{name}: no message"
    assert seconds < BOUND, f"{name} took {seconds:.2f} s"


def _refused_while_down(scene: Scene) -> dict[str, float]:
    """Each request in turn; returns the time each took."""
    took = {}
    for name, call in scene.requests().items():
        r, seconds = timed(call)
        _assert_store_unavailable(name, r, seconds)
        took[name] = round(seconds, 3)
    # Public paths never touch the store: they pass through untouched, down or not.
    assert scene.owner.get("/").status_code == 200
    return took


@contextmanager
def frozen(server: Any) -> Iterator[None]:
    """Redis hung: its process stopped (SIGSTOP), so every command waits, reads as much as writes,
    until it is continued. (``CLIENT PAUSE WRITE`` lets plain reads through, and the guard and
    ``load`` are plain reads in a MULTI/EXEC: a pass-through would be served, rightly. ``CLIENT
    PAUSE ALL`` holds ``CLIENT UNPAUSE`` too, so the test could not end it early.)"""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)


def _refused_while_paused(scene: Scene, server: Any) -> dict[str, float]:
    """Every request at once while Redis is hung (each waits for the store timeout)."""
    named = scene.requests()
    calls = [lambda call=call: timed(call) for call in named.values()]
    with frozen(server):
        results = at_once(calls)  # type: ignore[arg-type]
    took = {}
    for name, (r, seconds) in zip(named, results, strict=True):  # type: ignore[misc]
        _assert_store_unavailable(name, r, seconds)
        took[name] = round(seconds, 3)
    return took


# -- through a real server ---------------------------------------------------------------------

@pytest.fixture(params=SERVER_KINDS)
def served(request: pytest.FixtureRequest, aof_redis: Any, database_url: str) -> Iterator[tuple[Scene, Any]]:
    if aof_redis.proc is None:
        aof_redis.start()
    clock = FrozenClock(T0)
    _, store, app = build_app(request.param, redis_url=aof_redis.url, database_url=database_url, clock=clock)
    browsers: list[Browser] = []

    def new_browser() -> Browser:
        browsers.append(Browser.at(base_url, clock))
        return browsers[-1]

    with serve(app, request.param) as base_url:
        yield Scene.build(new_browser, clock), aof_redis
    for b in browsers:
        b.close()
    store.close()


def test_redis_stopped_mid_session_answers_503_quickly_then_the_same_cookies_work_after_restart(
        served: tuple[Scene, Any]) -> None:
    scene, server = served
    server.stop()
    try:
        took = _refused_while_down(scene)
    finally:
        server.start()  # same port, same append-only file: the data is back
    print(f"\n503 times with Redis stopped: {took}")
    scene.works_again()


def test_redis_paused_answers_503_within_the_store_timeout_then_works_when_resumed(
        served: tuple[Scene, Any]) -> None:
    scene, server = served
    took = _refused_while_paused(scene, server)
    print(f"\n503 times with Redis paused: {took}")
    scene.works_again()


# -- in-process (the suite's stacks, session Redis) -------------------------------------------

@pytest.fixture
def in_process(stack_factory: Callable[..., Any], clock: FrozenClock) -> tuple[Callable[[], Browser], Any]:
    stack = stack_factory()
    return (lambda: Browser.over(stack.client().http, clock)), stack


@pytest.mark.parametrize("stack_factory", IN_PROCESS, indirect=True)
def test_in_process_redis_stopped_answers_503_quickly_and_recovers_without_an_app_restart(
        in_process: tuple[Callable[[], Browser], Any], clock: FrozenClock) -> None:
    new_browser, stack = in_process
    scene = Scene.build(new_browser, clock)
    stack.redis.stop()
    try:
        took = _refused_while_down(scene)
    finally:
        stack.redis.start()  # no persistence on the session server: everything is gone
    print(f"\n503 times with Redis stopped: {took}")
    assert scene.owner.get("/api/me").status_code == 401  # the session went with the data
    Scene.build(new_browser, clock).works_again()  # the same app serves a new user end to end


@pytest.mark.parametrize("stack_factory", IN_PROCESS, indirect=True)
def test_in_process_redis_paused_answers_503_within_the_store_timeout(
        in_process: tuple[Callable[[], Browser], Any], clock: FrozenClock) -> None:
    new_browser, stack = in_process
    scene = Scene.build(new_browser, clock)
    took = _refused_while_paused(scene, stack.redis)
    print(f"\n503 times with Redis paused: {took}")
    scene.works_again()

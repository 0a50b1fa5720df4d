"""redis-server killed while a real server is under a stream of requests: every answer is 200 (before),
503 STORE_UNAVAILABLE (while down) or 200 again (after a restart) — never a 5xx other than 503, never
a hang, never a session without a second factor — and the app recovers without a restart."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis_support import T0, Browser, build_app
from servers import SERVER_KINDS, serve

from banata_middleware.simulator.clocks import FrozenClock

pytestmark = pytest.mark.redis


@pytest.fixture
def aof_redis(redis_server: Any) -> Iterator[Any]:
    server = type(redis_server)(appendonly=True)  # data survives the kill: the same users come back
    yield server
    server.stop()


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_redis_killed_mid_load_fails_closed_and_recovers(aof_redis: Any, database_url: str, kind: str) -> None:
    clock = FrozenClock(T0)
    _, _, app = build_app(kind, redis_url=aof_redis.url, database_url=database_url, clock=clock)
    with serve(app, kind) as base_url:
        owner = Browser.at(base_url, clock)
        email = "load-fault@example.com"
        owner.sign_up(email)
        owner.enable_2fa()
        cookies = dict(owner.http.cookies)
        stop = threading.Event()
        seen: Counter[tuple[str, int, str]] = Counter()
        slowest = [0.0]
        sessions_without_factor: list[str] = []

        def hammer(kind_of_request: str) -> None:
            jar = cookies if kind_of_request == "me" else None
            with httpx.Client(base_url=base_url, headers={"origin": "http://testserver"}, cookies=jar,
                              timeout=10) as c:
                while not stop.is_set():
                    started = time.monotonic()
                    if kind_of_request == "me":
                        r = c.get("/api/me")
                    else:  # a password sign-in, then a wrong code: must never end in a session
                        c.cookies.clear()
                        r = c.post("/api/auth/sign-in/email",
                                   json={"email": email, "password": "correct horse battery staple"})
                        if r.status_code == 403:
                            r = c.post("/api/auth/two-factor/verify-totp", json={"code": "000000"})
                        if "banata.session_token" in c.cookies:
                            sessions_without_factor.append(r.text)
                    slowest[0] = max(slowest[0], time.monotonic() - started)
                    code = r.json().get("code", "") if r.headers.get("content-type") == "application/json" and \
                        r.status_code != 200 else ""
                    seen[(kind_of_request, r.status_code, code)] += 1

        workers = [threading.Thread(target=hammer, args=(k,)) for k in ("me", "me", "me", "guess", "guess")]
        for w in workers:
            w.start()
        time.sleep(1.0)
        aof_redis.stop()  # SIGKILL mid-load
        time.sleep(1.5)
        aof_redis.start()
        time.sleep(1.5)
        stop.set()
        for w in workers:
            w.join(timeout=15)
        assert not any(w.is_alive() for w in workers), "a request hung"
        print(f"{kind}: {dict(seen)}; slowest {slowest[0]:.2f} s")
        statuses = {status for _, status, _ in seen}
        assert statuses <= {200, 401, 403, 429, 503}, seen
        assert all(code == "STORE_UNAVAILABLE" for _, status, code in seen if status == 503)
        assert seen[("me", 503, "STORE_UNAVAILABLE")] > 0  # the outage was seen
        assert not sessions_without_factor
        assert slowest[0] < 5
        assert owner.get("/api/me").status_code == 200  # recovered, with the same session, no restart

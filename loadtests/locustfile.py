"""Locust user classes for banata-middleware: ``python -m loadtests`` runs them against a server it
starts; run by hand with ``LOADTEST_POOL=pool.json locust -f loadtests/locustfile.py CLASS...``.

The seeded pool (see ``loadtests/seed.py``) is a JSON file named by ``LOADTEST_POOL``: pending
sign-in challenge cookies of users with 2FA on (their otpauth URIs, or their backup codes), and
session cookies. Every request sends ``Origin: <site url>`` and sets the ``Cookie`` header itself
(the session's cookie jar is switched off, so nothing a response sets is sent back).

A response that is not the one the contract promises is a failure named by its kind
(``"<status> <code>"``); the attacker's refusals (401, 429) are successes. When the locust run ends,
a summary (distinct users used, pool shortfalls, refusal kinds) is written to ``LOADTEST_SUMMARY``.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import gevent  # type: ignore[import-untyped]
from locust import FastHttpUser, constant, events, task
from locust.contrib.fasthttp import FastResponse

from banata_middleware.simulator import VirtualAuthenticator

try:
    from loadtests.pool import Pool
except ImportError:  # run by hand as `locust -f loadtests/locustfile.py` from elsewhere
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from loadtests.pool import Pool

BASE = "/api/auth"

# The size of a real challenge cookie, for the reference endpoint (which reads no cookie).
_FAKE_CHALLENGE = "banata.two_factor=lt-p-totp-0." + "x" * 43 + "." + "y" * 43

NAMES = {
    "totp": "verify-totp",
    "backup": "verify-backup-code",
    "attack": "verify-totp wrong code",
    "me": "GET /api/me",
    "bare2": "bare 2 round trips",
    "bare1": "bare 1 GET",
}


def _error_kind(resp: FastResponse) -> str:
    """``"<status> <CODE>"`` for an unexpected response (the contract's error code when there is one)."""
    status = resp.status_code
    if not status:
        error = getattr(resp, "error", None)  # locust's ErrorResponse carries the exception
        return f"connection error: {type(error).__name__}" if error else "connection error"
    code = ""
    try:
        body = json.loads(resp.content or b"null")
        if isinstance(body, dict):
            code = str(body.get("code", ""))
    except ValueError:
        code = "non-JSON body"
    return f"{status} {code}".strip()


_POOL: Pool | None = None


def pool() -> Pool:
    global _POOL
    if _POOL is None:
        path = os.environ.get("LOADTEST_POOL")
        if not path:
            raise RuntimeError("LOADTEST_POOL is not set: run `python -m loadtests`, which seeds the pool")
        with open(path, encoding="utf-8") as fh:
            _POOL = Pool(json.load(fh))
    return _POOL


@events.init.add_listener  # type: ignore[untyped-decorator]
def _load_pool(environment: Any, **kwargs: Any) -> None:
    if os.environ.get("LOADTEST_POOL"):
        pool()  # parse the file before the clock starts


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write_summary(environment: Any, **kwargs: Any) -> None:
    path = os.environ.get("LOADTEST_SUMMARY")
    if path and _POOL is not None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(_POOL.summary(), fh, indent=2)


class _Base(FastHttpUser):
    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.client.client.cookiejar = None  # the Cookie header is ours alone
        self.pool = pool()
        self.origin = self.pool.site_url.rstrip("/")

    def headers(self, cookie: str) -> dict[str, str]:
        return {"Origin": self.origin, "Cookie": cookie}

    def post_code(self, path: str, name: str, cookie: str, code: str) -> Any:
        return self.client.post(BASE + path, json={"code": code}, headers=self.headers(cookie), name=name,
                                catch_response=True)

    def wait_for_pool(self, kind: str) -> None:
        self.pool.waits[kind] += 1
        gevent.sleep(0.05)


class VerifyTotpUser(_Base):
    """A user answering their sign-in challenge with the code their phone shows (one per step)."""

    @task
    def verify(self) -> None:
        taken = self.pool.take_totp()
        if taken is None:
            self.wait_for_pool("totp")
            return
        entry, cookie, now = taken
        app = entry.get("app")
        if app is None:
            app = entry["app"] = VirtualAuthenticator.from_uri(entry["uri"])
        with self.post_code("/two-factor/verify-totp", NAMES["totp"], cookie, app.code(at=now)) as resp:
            if resp.status_code == 200 and b'"token"' in resp.content:
                resp.success()
            else:
                resp.failure(_error_kind(resp))


class VerifyBackupCodeUser(_Base):
    """A user answering their sign-in challenge with one of their backup codes."""

    @task
    def verify(self) -> None:
        taken = self.pool.take_backup()
        if taken is None:
            self.wait_for_pool("backup")
            return
        cookie, code = taken
        with self.post_code("/two-factor/verify-backup-code", NAMES["backup"], cookie, code) as resp:
            if resp.status_code == 200 and b'"backupCodesRemaining"' in resp.content:
                resp.success()
            else:
                resp.failure(_error_kind(resp))


class WrongCodeAttacker(_Base):
    """Guesses codes for other people's challenges. A refusal (401, or 429 once the user is locked)
    is the right answer; a 200 or anything else is a failure. It keeps a challenge until it is
    refused for good (5 wrong codes end a challenge, 10 lock the user), then moves on."""

    target: dict[str, Any] | None = None

    def _wrong_code(self, entry: dict[str, Any], now: float) -> str:
        app = entry.get("app")
        if app is None:
            app = entry["app"] = VirtualAuthenticator.from_uri(entry["uri"])
        valid = {app.code(at=now, steps=s) for s in (-2, -1, 0, 1, 2)}  # the server may be a step later
        while True:
            code = f"{random.randrange(1_000_000):06d}"
            if code not in valid:
                return code

    @task
    def guess(self) -> None:
        entry = self.target
        if entry is None or not entry["challenges"]:
            entry = self.target = self.pool.take_attack()
        cookie = entry["challenges"][-1]
        code = self._wrong_code(entry, time.time())
        with self.post_code("/two-factor/verify-totp", NAMES["attack"], cookie, code) as resp:
            status = resp.status_code
            if status in (401, 429):
                resp.success()
                kind = _error_kind(resp)
                self.pool.refusals[kind] += 1
                if status == 429:
                    entry["challenges"].clear()  # locked: this user is done
                elif not kind.endswith("INVALID_CODE"):
                    entry["challenges"].pop()  # the challenge is gone (exhausted or unknown)
            else:
                resp.failure(_error_kind(resp))


class PassThroughUser(_Base):
    """A signed-in user calling a protected page of the app (the middleware's one-round-trip path)."""

    def on_start(self) -> None:
        super().on_start()
        if not self.pool.sessions:
            raise RuntimeError("the pool has no sessions")

    @task
    def me(self) -> None:
        cookie = random.choice(self.pool.sessions)
        with self.client.get("/api/me", headers=self.headers(cookie), name=NAMES["me"], catch_response=True) as resp:
            if resp.status_code == 200 and b'"userId"' in resp.content:
                resp.success()
            else:
                resp.failure(_error_kind(resp))


class BareTwoRoundTripsUser(_Base):
    """Reference: the same request shape as verify-totp against an endpoint doing only its Redis
    round trips (EVALSHA + GET), outside the middleware."""

    @task
    def bare(self) -> None:
        cookie = self.pool.challenge_sample or _FAKE_CHALLENGE
        with self.client.post("/bare/two-round-trips", json={"code": "123456"}, headers=self.headers(cookie),
                              name=NAMES["bare2"], catch_response=True) as resp:
            if resp.status_code == 200:
                resp.success()
            else:
                resp.failure(_error_kind(resp))


class BareOneGetUser(_Base):
    """Reference: the same request shape as the pass-through against an endpoint doing one Redis GET."""

    @task
    def bare(self) -> None:
        cookie = random.choice(self.pool.sessions) if self.pool.sessions else "banata.session_token=x"
        with self.client.get("/bare/one-get", headers=self.headers(cookie), name=NAMES["bare1"],
                             catch_response=True) as resp:
            if resp.status_code == 200:
                resp.success()
            else:
                resp.failure(_error_kind(resp))

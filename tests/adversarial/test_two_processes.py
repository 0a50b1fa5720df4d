"""Scale-out: two app processes behind one Redis, an ASGI one (uvicorn) and a WSGI one (Werkzeug's
threaded server), each in its own subprocess on the real clock, sharing nothing but Redis.

- a pending challenge, a passkey ceremony or a session made on one process works on the other;
- the replay guard holds across them: one TOTP code (or one backup code) sent to both at once,
  for several pending challenges of one user, gives exactly one session;
- what a scanner sends to the real servers (raw request lines) never gets a 5xx.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import PostgresDatabase, free_port

from banata_middleware.simulator import VirtualAuthenticator, VirtualPasskey

pytestmark = pytest.mark.redis

SITE = "http://testserver"
PASSWORD = "correct horse battery"
AUTH = "/api/auth"
APP = Path(__file__).with_name("two_process_app.py")


def _start(kind: str, redis_url: str, database_url: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(APP), kind, str(port), redis_url, database_url],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(proc: subprocess.Popen[str], timeout: float = 30) -> None:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"app process did not start: {''.join(seen)}") from None
        seen.append(line)
        if line.strip() == "READY":
            return


@pytest.fixture(scope="module")
def two_apps(redis_server: Any, postgres_db: PostgresDatabase) -> Iterator[tuple[str, str]]:
    """(ASGI base URL, WSGI base URL): two processes on the suite's Redis and its PostgreSQL
    database: one record store for both, as in production."""
    url = postgres_db.empty()
    started = [_start("asgi", redis_server.url, url), _start("wsgi", redis_server.url, url)]
    try:
        for proc, _ in started:
            _wait_ready(proc)
        yield started[0][1], started[1][1]
    finally:
        for proc, _ in started:
            proc.terminate()
        for proc, _ in started:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Browser:
    """One cookie jar used against both processes (cookies are per host, not per port)."""

    def __init__(self) -> None:
        self.http = httpx.Client(headers={"origin": SITE}, timeout=15)

    def post(self, base: str, path: str, body: Any = None) -> httpx.Response:
        return self.http.post(base + path, json=body)

    def get(self, base: str, path: str) -> httpx.Response:
        return self.http.get(base + path)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browsers() -> Iterator[Any]:
    made: list[Browser] = []

    def make() -> Browser:
        made.append(Browser())
        return made[-1]

    yield make
    for b in made:
        b.close()


def user_with_2fa(make: Any, setup_on: str, confirm_on: str) -> tuple[str, str, VirtualAuthenticator, list[str]]:
    """A new user: signed up and 2FA enabled on one process, confirmed on the other (real clock)."""
    email = f"{uuid.uuid4().hex[:12]}@example.com"
    owner = make()
    r = owner.post(setup_on, f"{AUTH}/sign-up/email", {"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    uid = r.json()["user"]["id"]
    r = owner.post(setup_on, f"{AUTH}/two-factor/enable", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    device = VirtualAuthenticator.from_uri(r.json()["totpURI"])
    codes: list[str] = r.json()["backupCodes"]
    r = owner.post(confirm_on, f"{AUTH}/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200 and r.json()["user"]["twoFactorEnabled"] is True, r.text
    return email, uid, device, codes


def test_challenge_ceremony_and_session_cross_between_the_processes(two_apps: tuple[str, str],
                                                                     browsers: Any) -> None:
    asgi, wsgi = two_apps
    email, uid, device, codes = user_with_2fa(browsers, asgi, wsgi)

    # Password on the WSGI process, second factor on the ASGI one; the session then works on both.
    b = browsers()
    r = b.post(wsgi, f"{AUTH}/sign-in/email", {"email": email, "password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (403, "TWO_FACTOR_REQUIRED")
    assert b.get(asgi, "/api/me").json()["code"] == "TWO_FACTOR_REQUIRED"
    r = b.post(asgi, f"{AUTH}/two-factor/verify-totp", {"code": device.code(steps=1)})
    assert r.status_code == 200, r.text
    for base in (asgi, wsgi):
        assert b.get(base, "/api/me").json() == {"userId": uid, "aal": 2}

    # A backup code the other way round; it is then used up on both.
    c = browsers()
    assert c.post(asgi, f"{AUTH}/sign-in/email", {"email": email, "password": PASSWORD}).status_code == 403
    r = c.post(wsgi, f"{AUTH}/two-factor/verify-backup-code", {"code": codes[0]})
    assert (r.status_code, r.json()["backupCodesRemaining"]) == (200, 9), r.text
    d = browsers()
    assert d.post(wsgi, f"{AUTH}/sign-in/email", {"email": email, "password": PASSWORD}).status_code == 403
    assert d.post(asgi, f"{AUTH}/two-factor/verify-backup-code", {"code": codes[0]}).json()["code"] == "INVALID_CODE"

    # WebAuthn ceremonies: options from one process, the answer to the other.
    key = VirtualPasskey()
    options = b.get(asgi, f"{AUTH}/passkey/generate-register-options").json()
    r = b.post(wsgi, f"{AUTH}/passkey/verify-registration", {"response": key.create(options, origin=SITE)})
    assert r.status_code == 200, r.text
    e = browsers()
    options = e.get(wsgi, f"{AUTH}/passkey/generate-authenticate-options").json()
    r = e.post(asgi, f"{AUTH}/passkey/verify-authentication", {"response": key.get(options, origin=SITE)})
    assert r.status_code == 200, r.text
    assert e.get(wsgi, "/api/me").json() == {"userId": uid, "aal": 2}

    # Signing out on one process ends the session on the other.
    assert b.post(wsgi, f"{AUTH}/sign-out").json() == {"success": True}
    assert b.get(asgi, "/api/me").status_code == 401


def race(racers: list[tuple[Browser, str]], path: str, code: str) -> list[tuple[int, str]]:
    """Every (browser, process) sends ``code`` to ``path`` at the same moment (a barrier)."""
    barrier = threading.Barrier(len(racers))
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def answer(b: Browser, base: str) -> None:
        barrier.wait()
        r = b.post(base, path, {"code": code})
        with lock:
            answers.append((r.status_code, r.json().get("code", "")))

    threads = [threading.Thread(target=answer, args=racer) for racer in racers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers


@pytest.mark.parametrize("method", ["totp", "backup_code"])
def test_one_code_sent_to_both_processes_at_once_gives_one_session(two_apps: tuple[str, str], browsers: Any,
                                                                   method: str) -> None:
    """Per round: a user, six pending challenges (three signed in on each process), and one code sent
    to all six at once, each to the *other* process than its sign-in. Exactly one session."""
    asgi, wsgi = two_apps
    for _ in range(3):
        email, uid, device, codes = user_with_2fa(browsers, wsgi, asgi)
        racers: list[tuple[Browser, str]] = []
        for i in range(6):
            b = browsers()
            signed_in_on, answers_on = (asgi, wsgi) if i % 2 else (wsgi, asgi)
            r = b.post(signed_in_on, f"{AUTH}/sign-in/email", {"email": email, "password": PASSWORD})
            assert r.status_code == 403, r.text
            racers.append((b, answers_on))
        path, code = ((f"{AUTH}/two-factor/verify-totp", device.code(steps=1)) if method == "totp"
                      else (f"{AUTH}/two-factor/verify-backup-code", codes[0]))
        answers = race(racers, path, code)
        assert sorted(answers) == [(200, "")] + [(401, "INVALID_CODE")] * 5, answers
        winners = [b for b, _ in racers if b.get(asgi, "/api/me").status_code == 200]
        assert len(winners) == 1 and winners[0].get(wsgi, "/api/me").json()["userId"] == uid


SCANNER_REQUESTS = [
    b"GET /api/auth/../../api/me HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /api/auth/%2e%2e/%2e%2e/api/me HTTP/1.1\r\nHost: t\r\n\r\n",
    b"get /api/me HTTP/1.1\r\nHost: t\r\n\r\n",
    b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n",
    b"PROPFIND /api/me HTTP/1.1\r\nHost: t\r\nDepth: 1\r\n\r\n",
    b"HEAD /api/me HTTP/1.1\r\nHost: t\r\n\r\n",
    b"HEAD /api/auth/get-session HTTP/1.1\r\nHost: t\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n",
    b"OPTIONS /api/auth/sign-in/email HTTP/1.1\r\nHost: t\r\nOrigin: http://evil.example\r\n"
    b"Access-Control-Request-Method: POST\r\n\r\n",
    b"GET /" + b"a" * 7000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /api/me HTTP/1.1\r\nHost: t\r\nCookie: banata.session_token=\xff\xfe\x80; banata.two_factor=\xc0\xae\r\n\r\n",
    b"GET /api/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xff\xff\r\n\r\n",
    b"GET /api/me HTTP/1.0\r\n\r\n",
    b"GET /api/me%00 HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /%ff%fe HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /api/auth/sign-in/email HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"
    b'{"email":"a@b.co","password":"x"}',
    b"POST /api/auth/sign-up/email HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n%s\r\n" % (8192, b"A" * 8192) for _ in range(9)) + b"0\r\n\r\n",
    b"POST /api/auth/sign-up/email HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n{}",
]
# Not HTTP/1.x at all: the server answers on its own (Python's http.server, under Werkzeug, says 400 or
# 505 "HTTP Version Not Supported", HTTP/0.9 style, without a status line); the app is never called.
NOT_HTTP = [b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\nHost: t\r\n\r\n", b"GET /api/me\r\n\r\n"]


def _raw(base: str, request: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


@pytest.mark.parametrize("request_bytes", SCANNER_REQUESTS + NOT_HTTP,
                         ids=[str(i) for i in range(len(SCANNER_REQUESTS + NOT_HTTP))])
def test_raw_scanner_requests_to_the_real_servers(two_apps: tuple[str, str], request_bytes: bytes) -> None:
    """Request lines no HTTP client library would send (raw '..', lower-case methods, bytes that
    are not UTF-8, lying lengths, chunked bodies over the cap, HTTP/9.9) to uvicorn and Werkzeug:
    each answer is a status below 500 (or a closed connection), never the protected app, and
    the server answers normally afterwards."""
    for base in two_apps:
        reply = _raw(base, request_bytes)
        if reply and request_bytes in NOT_HTTP:
            assert b'"userId"' not in reply and b"Signed in as" not in reply, (base, reply[:300])
        elif reply:
            status_line = reply.split(b"\r\n", 1)[0]
            parts = status_line.split(b" ")
            assert len(parts) >= 2 and parts[0].startswith(b"HTTP/"), (base, reply[:200])
            assert int(parts[1]) < 500, (base, status_line, reply[:300])
            assert b'"userId"' not in reply and b"Signed in as" not in reply, (base, reply[:300])
        assert httpx.get(base + "/sign-in", timeout=10).status_code == 200


def test_a_lower_case_post_with_a_foreign_origin_is_refused_by_the_real_wsgi_server(
        two_apps: tuple[str, str], browsers: Any) -> None:
    """Werkzeug's server passes ``post`` through and Werkzeug routes it as POST: without the
    upper-casing in the origin check this request ran the view (200 {"ok": true})."""
    _, wsgi = two_apps
    owner = browsers()
    email, _, device, _ = user_with_2fa(browsers, wsgi, wsgi)
    assert owner.post(wsgi, f"{AUTH}/sign-in/email", {"email": email, "password": PASSWORD}).status_code == 403
    assert owner.post(wsgi, f"{AUTH}/two-factor/verify-totp", {"code": device.code(steps=1)}).status_code == 200
    assert owner.post(wsgi, "/api/sensitive").json() == {"ok": True}  # fresh second factor, own origin
    cookie = f"banata.session_token={owner.http.cookies['banata.session_token']}".encode()
    for method in (b"post", b"Post", b"POST"):
        reply = _raw(wsgi, method + b" /api/sensitive HTTP/1.1\r\nHost: t\r\nCookie: " + cookie
                     + b"\r\nOrigin: http://evil.example\r\nContent-Length: 0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 403") and b"INVALID_ORIGIN" in reply, (method, reply[:300])

"""Anonymous requests cannot grow the store without bound (issue 12 item 4).

10,000 anonymous requests, every kind interleaved: passkey authenticate options, sign-in with
random emails, sign-up attempts (new and taken emails), verify-totp / verify-backup-code /
verify-authentication with forged cookies, verify-authentication with a real ceremony cookie and a
junk answer (``BANATA_FLOOD_REQUESTS=80000``, or ``BANATA_TEST_DEPTH=deep``, sends 10,000 of each
kind; it takes minutes). The store must stay within a stated bound:

- passkey options write nothing (the ceremony travels in its signed cookie);
- forged cookies write nothing (a cookie that fails its signature names nothing), and a real ceremony
  cookie writes its single-use mark only once the assertion verifies;
- sign-in failures write two counters per email (the account's, the account-and-address pair's), but
  only until the client address has failed ``sign_in_failures_per_address`` times in the window (then
  429 before anything is read or written);
- sign-ups from one address stop at ``sign_up_per_address`` per window (then 429 before hashing).

So one address can leave at most: 2 x 50 account-failure counters + 1 address-failure counter + 1
password-check counter + 1 sign-up counter + 20 accounts of 5 keys (user, email index, session,
session set, audit stream) = 203 keys.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from harness import PASSWORD, SITE, Stack, knob
from servers import SERVER_KINDS, serve

from banata_middleware.config import Policies

FLOOD_REQUESTS = knob("BANATA_FLOOD_REQUESTS", 10_000, 80_000)
P = Policies()
MAX_KEYS = (2 * P.sign_in_failures_per_address + 1) + 1 + 1 + P.sign_up_per_address * 5  # 203, see above
# Redis's own bookkeeping moves used_memory by some KB (client buffers, the script cache); 203 small
# keys and 20 audit streams stay far below 1 MiB. 10,000 ceremonies of ~700 bytes each do not.
MAX_REDIS_BYTES = 1024 * 1024

PK = "/api/auth/passkey"
TF = "/api/auth/two-factor"


def _forged(kind: str) -> str:
    """A cookie value of the right shape, signed with a key the app does not know."""
    if kind == "passkey":
        payload = base64.urlsafe_b64encode(json.dumps({"type": "authentication", "challenge": "x" * 43, "uid": "",
                                                       "name": "", "exp": 2**45}).encode()).rstrip(b"=").decode()
        return f"{payload}.{secrets.token_urlsafe(32)}"
    return f"{secrets.token_urlsafe(16)}.{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(32)}"


def _assertion() -> dict[str, Any]:
    cred = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return {"id": cred, "rawId": cred, "type": "public-key",
            "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA"}}


def kinds(taken_email: str) -> list[tuple[str, Callable[[httpx.Client, str], httpx.Response], set[int]]]:
    """(name, one anonymous request, the statuses it may answer)."""
    def cookie(name: str, value: str) -> dict[str, str]:
        return {"cookie": f"{name}={value}", "origin": SITE}

    return [
        ("passkey options", lambda c, base: c.get(f"{base}{PK}/generate-authenticate-options"), {200}),
        ("sign-in, random email", lambda c, base: c.post(
            f"{base}/api/auth/sign-in/email",
            json={"email": f"{secrets.token_hex(8)}@example.com", "password": "wrong password 1"}), {401, 429}),
        ("sign-up, new email", lambda c, base: c.post(
            f"{base}/api/auth/sign-up/email",
            json={"email": f"{secrets.token_hex(8)}@example.com", "password": PASSWORD}), {200, 429}),
        ("sign-up, taken email", lambda c, base: c.post(
            f"{base}/api/auth/sign-up/email", json={"email": taken_email, "password": PASSWORD}), {422, 429}),
        ("verify-totp, forged cookie", lambda c, base: c.post(
            f"{base}{TF}/verify-totp", json={"code": "123456"},
            headers=cookie("banata.two_factor", _forged("two_factor"))), {401}),
        ("verify-backup-code, forged cookie", lambda c, base: c.post(
            f"{base}{TF}/verify-backup-code", json={"code": "abcde-fghij"},
            headers=cookie("banata.two_factor", _forged("two_factor"))), {401}),
        ("verify-authentication, forged cookie", lambda c, base: c.post(
            f"{base}{PK}/verify-authentication", json={"response": _assertion()},
            headers=cookie("banata.passkey", _forged("passkey"))), {400}),
        ("verify-authentication, real cookie, junk answer", lambda c, base: c.post(
            f"{base}{PK}/verify-authentication", json={"response": _assertion()},
            headers=cookie("banata.passkey", _real_ceremony(c, base))), {401}),
    ]


def _real_ceremony(c: httpx.Client, base: str) -> str:
    """A genuine banata.passkey cookie value, as anyone gets one (without keeping it in ``c``)."""
    r = c.get(f"{base}{PK}/generate-authenticate-options")
    value = r.cookies["banata.passkey"]
    c.cookies.clear()
    return value


class Meter:
    """The store's key count and (Redis) memory."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.admin = stack.redis.client() if stack.redis else None

    def keys(self) -> int:
        if self.admin is not None:
            return int(self.admin.dbsize())
        return len(_memory_data(self.stack))

    def memory(self) -> int:
        return int(self.admin.info("memory")["used_memory"]) if self.admin is not None else 0


def _memory_data(stack: Stack) -> dict[str, Any]:
    from banata_middleware.stores import MemoryStore

    store = stack.auth.store
    assert isinstance(store, MemoryStore)
    return store.data


def flood(stack: Stack, send: Callable[[Callable[[httpx.Client, str], httpx.Response]], httpx.Response],
          per_kind: int) -> tuple[int, int]:
    """Every kind ``per_kind`` times, interleaved; returns (keys added, Redis bytes added)."""
    meter = Meter(stack)
    r = send(lambda c, base: c.post(f"{base}/api/auth/sign-up/email",
                                    json={"email": "taken@example.com", "password": PASSWORD}))
    assert r.status_code == 200, r.text
    requests = kinds("taken@example.com")
    for _, call, _ in requests:  # once each first: scripts loaded, connections open
        send(call)
    keys0, mem0 = meter.keys(), meter.memory()
    for i in range(per_kind):
        for name, call, statuses in requests:
            r = send(call)
            assert r.status_code in statuses, (name, i, r.status_code, r.text)
    return meter.keys() - keys0, meter.memory() - mem0


def test_ten_thousand_anonymous_requests_of_every_kind_leave_the_store_bounded(stack: Stack) -> None:
    client = stack.client(ip="203.0.113.66").http

    def send(call: Callable[[httpx.Client, str], httpx.Response]) -> httpx.Response:
        client.cookies.clear()  # an attacker's script keeps no cookies
        return call(client, "")

    per_kind = -(-FLOOD_REQUESTS // 8)
    keys, memory = flood(stack, send, per_kind)
    print(f"\n{stack.adapter}-{stack.store_kind}: {per_kind} requests of each of 8 kinds "
          f"added {keys} keys, {memory} bytes of Redis memory")
    assert keys <= MAX_KEYS
    assert memory <= MAX_REDIS_BYTES
    if stack.store_kind == "memory":
        from banata_middleware.stores import MemoryStore

        store = stack.auth.store
        assert isinstance(store, MemoryStore)
        assert len(store._expiry_heap) <= 2 * MAX_KEYS  # the sweep's index does not grow either


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_an_anonymous_flood_through_a_real_server_leaves_the_store_bounded(
        kind: str, stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory()
    if stack.adapter != kind:
        pytest.skip("one real server per adapter")
    with serve(stack.app, kind) as base, httpx.Client(headers={"origin": SITE}) as client:
        def send(call: Callable[[httpx.Client, str], httpx.Response]) -> httpx.Response:
            client.cookies.clear()
            return call(client, base)

        keys, memory = flood(stack, send, 300)
    assert keys <= MAX_KEYS
    assert memory <= MAX_REDIS_BYTES

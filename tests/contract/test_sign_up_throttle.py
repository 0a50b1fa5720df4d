"""Sign-up costs a password hash (scrypt), so it is throttled per client address before any hashing,
and a taken email is refused before hashing (issue 19 item 1)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from harness import PASSWORD, Stack

from banata_middleware.config import Policies


class HashCounter:
    """Counts scrypt runs of one app: every ``hash`` and ``verify`` of its password hasher."""

    def __init__(self, stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        hasher = stack.auth.flows.hasher
        for name in ("hash", "verify"):
            real = getattr(hasher, name)

            def counted(*args: object, _real: object = real) -> object:
                self.calls += 1
                return _real(*args)  # type: ignore[operator]

            monkeypatch.setattr(hasher, name, counted)


@pytest.fixture
def hashes(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[HashCounter]:
    yield HashCounter(stack, monkeypatch)


def test_the_21st_sign_up_from_one_address_is_refused_before_hashing(stack: Stack, hashes: HashCounter) -> None:
    api = stack.client(ip="203.0.113.7")
    for i in range(20):
        r = stack.client(ip="203.0.113.7").auth("/sign-up/email", {"email": f"n{i}@example.com", "password": PASSWORD})
        assert r.status_code == 200, r.text
    assert hashes.calls == 20
    r = api.auth("/sign-up/email", {"email": "n20@example.com", "password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (429, "TOO_MANY_REQUESTS")
    assert 1 <= int(r.headers["retry-after"]) <= 600
    assert hashes.calls == 20  # refused before any scrypt
    # Another address is not affected; the window passing lets this one sign up again.
    assert stack.client(ip="203.0.113.8").auth(
        "/sign-up/email", {"email": "other@example.com", "password": PASSWORD}).status_code == 200
    stack.clock.advance(601)
    assert api.auth("/sign-up/email", {"email": "n20@example.com", "password": PASSWORD}).status_code == 200


def test_every_attempt_counts_refused_ones_too(stack: Stack, hashes: HashCounter) -> None:
    api = stack.client(ip="203.0.113.9")
    for _ in range(20):  # malformed, too short, taken: all count
        assert api.auth("/sign-up/email", {"email": "nope", "password": PASSWORD}).status_code == 400
    r = api.auth("/sign-up/email", {"email": "fresh@example.com", "password": PASSWORD})
    assert r.status_code == 429 and hashes.calls == 0


def test_a_taken_email_is_refused_without_hashing(stack: Stack, hashes: HashCounter) -> None:
    stack.client().sign_up("taken@example.com")
    before = hashes.calls
    r = stack.client(ip="198.51.100.1").auth("/sign-up/email", {"email": "Taken@Example.com", "password": PASSWORD})
    assert (r.status_code, r.json()["code"]) == (422, "USER_ALREADY_EXISTS")
    assert hashes.calls == before


def test_the_limit_and_window_are_policies(stack_factory: Callable[..., Stack]) -> None:
    stack = stack_factory(policies=Policies(sign_up_per_address=2, sign_up_window=60))
    api = stack.client()
    assert api.auth("/sign-up/email", {"email": "a@example.com", "password": PASSWORD}).status_code == 200
    assert api.auth("/sign-up/email", {"email": "b@example.com", "password": PASSWORD}).status_code == 200
    r = api.auth("/sign-up/email", {"email": "c@example.com", "password": PASSWORD})
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60


def test_an_ipv6_client_cannot_rotate_through_its_network(stack: Stack, hashes: HashCounter) -> None:
    for i in range(20):
        r = stack.client(ip=f"2001:db8:1:2::{i + 1:x}").auth(
            "/sign-up/email", {"email": f"v6-{i}@example.com", "password": PASSWORD})
        assert r.status_code == 200, r.text
    r = stack.client(ip="2001:db8:1:2:ffff::9").auth("/sign-up/email", {"email": "v6-x@example.com",
                                                                         "password": PASSWORD})
    assert r.status_code == 429 and hashes.calls == 20
    # Another /64 of the same /48 (one site) shares the limit; another site does not.
    assert stack.client(ip="2001:db8:1:3::1").auth(
        "/sign-up/email", {"email": "v6-y@example.com", "password": PASSWORD}).status_code == 429
    assert stack.client(ip="2001:db8:2:3::1").auth(
        "/sign-up/email", {"email": "v6-y@example.com", "password": PASSWORD}).status_code == 200

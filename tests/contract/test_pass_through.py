"""The authenticated pass-through's direct path (``BanataAuth.handle``/``ahandle`` run the guard's
steps without the gateway's flow) and what it keeps between requests: the guard's ids by Cookie
header (``SessionCore.guard_op``) and each path's verdict (``Gateway._judge``). What is kept is
derived from the request alone; whether the session still lives is asked of the store every time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from harness import SITE, Stack

import banata_middleware.flows.session as session_module
import banata_middleware.gateway as gateway_module
from banata_middleware.gateway import GuardStep
from banata_middleware.http import Request, Response


def _token(api: Any) -> str:
    return str(api.http.cookies[api.stack.auth.flows.session_cookie])


def _me(stack: Stack, headers: dict[str, str]) -> httpx.Response:
    """GET /api/me with exactly these headers (no cookie jar)."""
    with httpx.Client(transport=stack.transport_factory("127.0.0.1"), base_url=SITE) as raw:
        return raw.get("/api/me", headers=headers)


def test_one_cookie_header_with_different_bearer_tokens_is_each_its_own_user(stack: Stack) -> None:
    """A Cookie header without our session cookie names nobody by itself: the bearer token does, so
    what the guard read from such a header is not kept for the next request."""
    alice, bob = stack.client(), stack.client()
    alice.sign_up("alice@example.com")
    bob.sign_up("bob@example.com")
    alice_id = alice.get("/api/me").json()["userId"]
    bob_id = bob.get("/api/me").json()["userId"]
    assert alice_id != bob_id
    cookie = "theme=dark; _ga=GA1.1.123"
    for token, user in ((_token(alice), alice_id), (_token(bob), bob_id), (_token(alice), alice_id)):
        r = _me(stack, {"cookie": cookie, "authorization": f"Bearer {token}"})
        assert (r.status_code, r.json()["userId"]) == (200, user)
    assert _me(stack, {"cookie": cookie}).status_code == 401


def test_a_kept_cookie_header_is_refused_once_its_session_ended(stack: Stack) -> None:
    api = stack.client()
    api.sign_up("ended@example.com")
    header = f"{stack.auth.flows.session_cookie}={_token(api)}; theme=dark"
    assert _me(stack, {"cookie": header}).status_code == 200  # its ids are kept from here on
    assert header in stack.auth.flows._guard_ids
    assert api.auth("/sign-out").status_code == 200
    r = _me(stack, {"cookie": header})
    assert (r.status_code, r.json()["code"]) == (401, "UNAUTHORIZED")


def test_a_forged_session_cookie_is_refused_and_never_kept(stack: Stack) -> None:
    api = stack.client()
    api.sign_up("forged@example.com")
    token = _token(api)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    header = f"{stack.auth.flows.session_cookie}={forged}"
    for _ in range(2):
        assert _me(stack, {"cookie": header}).status_code == 401
    assert header not in stack.auth.flows._guard_ids


def test_the_kept_guard_ids_stay_bounded(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "_GUARD_CACHE_SIZE", 8)
    api = stack.client()
    api.sign_up("bounded@example.com")
    session = f"{stack.auth.flows.session_cookie}={_token(api)}"
    for i in range(30):  # the same session, behind other cookies that change: another header each time
        assert _me(stack, {"cookie": f"n={i}; {session}"}).status_code == 200
        assert len(stack.auth.flows._guard_ids) <= 8
    long_header = f"pad={'x' * 2000}; {session}"  # too long to keep, still answered
    assert _me(stack, {"cookie": long_header}).status_code == 200
    assert long_header not in stack.auth.flows._guard_ids


def _step(stack: Stack, path: str, raw_path: str, cookie: str = "") -> Any:
    return stack.auth.gateway.step(Request("GET", path, {"cookie": cookie} if cookie else {}, raw_path=raw_path))


def test_a_path_judged_before_is_judged_again_when_its_raw_path_differs(stack: Stack) -> None:
    """The verdict kept for a path is about that path; a request whose raw (still percent-encoded)
    path differs is checked on that too, every time."""
    api = stack.client()
    api.sign_up("judged@example.com")
    cookie = f"{stack.auth.flows.session_cookie}={_token(api)}"
    assert type(_step(stack, "/api/me", "/api/me", cookie)) is GuardStep
    assert "/api/me" in stack.auth.gateway._judged
    refused = _step(stack, "/api/me", "/api%2fme", cookie)
    assert type(refused) is Response and (refused.status, refused.code) == (400, "INVALID_PATH")
    assert type(_step(stack, "/api/me", "/api/me", cookie)) is GuardStep
    # An ambiguous path is never kept: refused each time.
    for _ in range(2):
        refused = _step(stack, "/api/../admin", "/api/../admin", cookie)
        assert type(refused) is Response and refused.code == "INVALID_PATH"
    assert "/api/../admin" not in stack.auth.gateway._judged
    # Nor is an auth endpoint's path (its flow is chosen each time).
    assert not isinstance(_step(stack, "/api/auth/get-session", "/api/auth/get-session"), (GuardStep, Response))
    assert "/api/auth/get-session" not in stack.auth.gateway._judged


def test_the_judged_paths_stay_bounded(stack_factory: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_module, "_JUDGED_SIZE", 8)
    stack = stack_factory(public_paths=("/public/*",))
    for i in range(30):
        assert _step(stack, f"/public/{i}", f"/public/{i}") is None  # public: passes untouched
        assert len(stack.auth.gateway._judged) <= 8
    assert type(_step(stack, "/private/x", "/private/x")) is Response  # protected, no session: refused
    long_path = "/public/" + "x" * 600
    assert _step(stack, long_path, long_path) is None
    assert long_path not in stack.auth.gateway._judged

"""ASGI specifics of the adapter."""

from __future__ import annotations

import anyio
import pytest

from banata_middleware.adapters.starlette import BanataMiddleware


def test_cookie_split_over_several_header_lines_is_joined(stack) -> None:  # type: ignore[no-untyped-def]
    if stack.adapter != "asgi" or stack.store_kind != "memory":
        pytest.skip("drives the ASGI app on its own event loop: the memory store's ASGI stack only")
    token = stack.client().sign_up("h2@example.com").json()["token"]
    app: BanataMiddleware = stack.app
    sent: list[dict[str, object]] = []
    scope = {"type": "http", "method": "GET", "path": "/api/me", "raw_path": b"/api/me", "query_string": b"",
             "root_path": "", "scheme": "http", "server": ("testserver", 80), "client": ("127.0.0.1", 1),
             "http_version": "2", "headers": [(b"cookie", b"theme=dark"),
                                               (b"cookie", b"banata.session_token=" + token.encode())]}

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 200


def test_websocket_to_a_protected_path_without_a_session_is_closed(stack) -> None:  # type: ignore[no-untyped-def]
    if stack.adapter != "asgi" or stack.store_kind != "memory":
        pytest.skip("drives the ASGI app on its own event loop: the memory store's ASGI stack only")
    sent: list[dict[str, object]] = []
    scope = {"type": "websocket", "path": "/api/me", "raw_path": b"/api/me", "query_string": b"",
             "root_path": "", "scheme": "ws", "server": ("testserver", 80), "client": ("127.0.0.1", 1),
             "headers": [(b"origin", b"http://testserver")], "subprotocols": []}

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    anyio.run(stack.app, scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.parametrize("endpoint", [False, True])
def test_scope_headers_read_the_same_at_every_look_up(endpoint: bool) -> None:
    """A pass-through's first look-up passes over the list; the next ones (and an endpoint's, from the
    start) use a dict: the same values either way, repeated lines joined."""
    from banata_middleware.adapters.starlette import _ScopeHeaders

    raw = [(b"host", b"testserver"), (b"cookie", b"a=1"), (b"x-forwarded-for", b"203.0.113.1"),
           (b"accept", b"text/html"), (b"cookie", b"b=2"), (b"x-forwarded-for", b"198.51.100.2")]
    unique = [(b"host", b"testserver"), (b"cookie", b"a=1; b=2"), (b"user-agent", b"caf\xe9")]
    wanted = {"cookie": "a=1; b=2", "x-forwarded-for": "203.0.113.1, 198.51.100.2", "accept": "text/html",
              "host": "testserver", "authorization": None}
    for order in (list(wanted), list(reversed(wanted))):
        headers = _ScopeHeaders(raw, endpoint)
        for _ in range(2):  # the first look-up, then the dict's
            assert {name: headers.get(name) for name in order} == wanted
        assert headers.get("authorization", "none") == "none"
        assert headers["accept"] == "text/html" and "cookie" in headers and "origin" not in headers
        with pytest.raises(KeyError):
            headers["origin"]
        headers = _ScopeHeaders(unique, endpoint)
        assert [headers.get("user-agent"), headers.get("cookie"), headers.get("user-agent")] == ["café", "a=1; b=2",
                                                                                                "café"]
        assert sorted(headers) == ["cookie", "host", "user-agent"] and len(headers) == 3

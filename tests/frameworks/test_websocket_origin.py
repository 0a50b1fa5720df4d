"""WebSocket handshakes are GETs, so the CSRF origin rule for POST/PUT/PATCH/DELETE never saw them:
a page on a sibling subdomain (same site, so SameSite=Lax sends the victim's cookie) opened an
authenticated socket. A handshake that carries our cookies (or Authorization with an Origin) must
come from the site; otherwise it is refused before accept (uvicorn answers 403).

ASGI through uvicorn with a real WebSocket client; WSGI through Werkzeug's server with a raw
``Upgrade: websocket`` GET (a WSGI server that upgrades, e.g. gevent-websocket, sends the same)."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any

import httpx
import pytest
from harness import PASSWORD, SECRET, SITE
from servers import serve
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from banata_middleware import BanataAuth, BanataAuthConfig, PasswordHashing
from banata_middleware.adapters import starlette as asgi_adapter
from banata_middleware.adapters import werkzeug as wsgi_adapter

EVIL = "http://evil.testserver"  # a sibling subdomain: same site, another origin


def make_auth() -> BanataAuth:
    return BanataAuth(BanataAuthConfig(app_name="Sockets", site_url=SITE, secret=SECRET,
                                       password_hashing=PasswordHashing(n=2**8)))


def sign_up(base: str, email: str) -> tuple[str, str]:
    r = httpx.post(f"{base}/api/auth/sign-up/email", json={"email": email, "password": PASSWORD},
                   headers={"origin": SITE}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["user"]["id"], r.json()["token"]


@pytest.fixture
def asgi_server() -> Any:
    async def socket_view(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text(ws.scope["banata"].user_id)
        await ws.close()

    app = asgi_adapter.BanataMiddleware(Starlette(routes=[WebSocketRoute("/ws", socket_view)]), make_auth())
    with serve(app, "asgi") as base:
        yield base


def open_socket(base: str, origin: str, headers: dict[str, str]) -> str:
    with connect(base.replace("http://", "ws://") + "/ws", origin=origin,  # type: ignore[arg-type]
                 additional_headers=headers, open_timeout=10) as ws:
        return str(ws.recv(timeout=10))


def refused_status(base: str, origin: str, headers: dict[str, str]) -> int:
    with pytest.raises(InvalidStatus) as refused:
        open_socket(base, origin, headers)
    return refused.value.response.status_code


def test_websocket_with_the_victims_cookie_from_a_sibling_origin_is_refused(asgi_server: str) -> None:
    user_id, token = sign_up(asgi_server, "ws@example.com")
    cookie = {"cookie": f"banata.session_token={token}"}
    assert open_socket(asgi_server, SITE, cookie) == user_id  # the site's own page: 101, the identity
    assert refused_status(asgi_server, EVIL, cookie) == 403
    assert refused_status(asgi_server, "http://testserver:8443", cookie) == 403  # another port
    assert refused_status(asgi_server, "null", cookie) == 403  # a sandboxed frame


def test_websocket_with_a_bearer_token_and_a_foreign_origin_is_refused(asgi_server: str) -> None:
    user_id, token = sign_up(asgi_server, "bearer-ws@example.com")
    bearer = {"authorization": f"Bearer {token}"}
    assert refused_status(asgi_server, EVIL, bearer) == 403
    assert open_socket(asgi_server, SITE, bearer) == user_id


def test_websocket_without_credentials_is_refused_for_want_of_a_session(asgi_server: str) -> None:
    assert refused_status(asgi_server, EVIL, {}) == 403  # no session: refused as before (not the origin rule)


def raw_handshake(base: str, origin: str, cookie: str) -> tuple[int, bytes]:
    host, port = base.removeprefix("http://").split(":")
    request = (f"GET /ws HTTP/1.1\r\nHost: testserver\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               f"Origin: {origin}\r\nCookie: {cookie}\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request.encode())
        reply = http.client.HTTPResponse(s)
        reply.begin()
        return reply.status, reply.read()


def test_wsgi_upgrade_request_with_the_victims_cookie_from_a_sibling_origin_is_refused() -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:  # stands in for an upgrading server's app
        start_response("200 OK", [("content-type", "text/plain"), ("connection", "close")])
        return [b"upgraded as " + environ["banata"].user_id.encode()]

    with serve(wsgi_adapter.BanataMiddleware(app, make_auth()), "wsgi") as base:
        user_id, token = sign_up(base, "wsgi-ws@example.com")
        cookie = f"banata.session_token={token}"
        status, body = raw_handshake(base, EVIL, cookie)
        assert status == 403 and json.loads(body)["code"] == "INVALID_ORIGIN", body
        status, body = raw_handshake(base, SITE, cookie)
        assert status == 200 and body == b"upgraded as " + user_id.encode()

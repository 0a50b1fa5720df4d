"""Paths the app will route differently from how they read: dot segments (plain, percent-encoded,
mixed case), encoded slashes and backslashes, sent raw over a socket (``curl --path-as-is``) to
real servers: uvicorn for Starlette and FastAPI, Werkzeug's threaded server for Flask and Django.

Each app has path-converter routes (``/api/files/{p:path}``, ``/api/billing/{p:path}``), which route
``..`` as part of the parameter rather than resolving it. The middleware used to judge the path
with its dot segments resolved, so ``/api/files/../../static/x`` was judged as the public
``/static/x`` and ``/api/billing/%2e%2e/pay`` escaped the ``/api/billing/*`` fresh-factor rule,
while the app ran the protected view. Now such a path is refused with 400 ``INVALID_PATH`` before
any policy decision.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from typing import Any

import django
import flask
import httpx
import pytest
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.test.utils import override_settings
from django.urls import path as django_path
from fastapi import FastAPI
from harness import PASSWORD, SECRET, SITE
from servers import serve
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Route

from banata_middleware import BanataAuth, BanataAuthConfig, PasswordHashing
from banata_middleware.adapters import starlette as asgi_adapter
from banata_middleware.adapters import werkzeug as wsgi_adapter


def make_auth(prefix: str = "") -> BanataAuth:
    return BanataAuth(BanataAuthConfig(
        app_name="Paths", site_url=SITE, secret=SECRET, base_path=prefix + "/api/auth",
        public_paths=(prefix + "/static/*",), fresh_paths={prefix + "/api/billing/*": 300},
        password_hashing=PasswordHashing(n=2**8),
    ))


# -- the four apps: the same routes, each framework's own path converter ---------------------------

def starlette_app(auth: BanataAuth) -> Any:
    async def files(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"view": "files", "p": request.path_params["p"]})

    async def billing(request: StarletteRequest) -> JSONResponse:
        return JSONResponse({"view": "billing", "p": request.path_params["p"]})

    inner = Starlette(routes=[Route("/api/files/{p:path}", files), Route("/static/{p:path}", files),
                              Route("/api/billing/{p:path}", billing, methods=["POST"])])
    return asgi_adapter.BanataMiddleware(inner, auth)


def fastapi_app(auth: BanataAuth) -> Any:
    app = FastAPI()

    @app.get("/api/files/{p:path}")
    @app.get("/static/{p:path}")
    def files(p: str) -> dict[str, str]:
        return {"view": "files", "p": p}

    @app.post("/api/billing/{p:path}")
    def billing(p: str) -> dict[str, str]:
        return {"view": "billing", "p": p}

    app.add_middleware(asgi_adapter.BanataMiddleware, auth=auth)
    return app


def flask_app(auth: BanataAuth) -> Any:
    app = flask.Flask(__name__, static_folder=None)  # the /static/<path:p> route is ours

    @app.get("/api/files/<path:p>")
    @app.get("/static/<path:p>")
    def files(p: str) -> dict[str, str]:
        return {"view": "files", "p": p}

    @app.post("/api/billing/<path:p>")
    def billing(p: str) -> dict[str, str]:
        return {"view": "billing", "p": p}

    app.wsgi_app = wsgi_adapter.BanataMiddleware(app.wsgi_app, auth)  # type: ignore[method-assign]
    return app


def _django_files(request: HttpRequest, p: str) -> JsonResponse:
    return JsonResponse({"view": "files", "p": p})


def _django_billing(request: HttpRequest, p: str) -> JsonResponse:
    return JsonResponse({"view": "billing", "p": p})


urlpatterns = [django_path("api/files/<path:p>", _django_files), django_path("static/<path:p>", _django_files),
               django_path("api/billing/<path:p>", _django_billing)]


@pytest.fixture(scope="module")
def django_urls() -> Iterator[None]:
    if not settings.configured:
        settings.configure(DEBUG=False, SECRET_KEY="django-insecure-" + "k" * 40, ROOT_URLCONF=__name__,
                           ALLOWED_HOSTS=["*"], INSTALLED_APPS=[], MIDDLEWARE=[], DATABASES={}, USE_TZ=True)
    django.setup()
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"]):
        yield


def django_app(auth: BanataAuth) -> Any:
    from django.core.wsgi import get_wsgi_application

    return wsgi_adapter.BanataMiddleware(get_wsgi_application(), auth)


APPS: dict[str, tuple[Callable[[BanataAuth], Any], str]] = {
    "starlette": (starlette_app, "asgi"), "fastapi": (fastapi_app, "asgi"),
    "flask": (flask_app, "wsgi"), "django": (django_app, "wsgi"),
}


@pytest.fixture(params=list(APPS))
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    factory, kind = APPS[request.param]
    if request.param == "django":
        request.getfixturevalue("django_urls")
    with serve(factory(make_auth()), kind) as base:
        yield base


# -- raw requests ----------------------------------------------------------------------------------

def raw(base: str, method: str, target: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Send the request line exactly as written (no client library resolves the dot segments)."""
    host, port = base.removeprefix("http://").split(":")
    lines = [f"{method} {target} HTTP/1.1", "Host: testserver", "Connection: close", "Content-Length: 0",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        reply = http.client.HTTPResponse(s)  # reads the answer, chunked or not
        reply.begin()
        return reply.status, reply.read()


def session_cookie(base: str, email: str, prefix: str = "") -> str:
    """A password-only session (no second factor): what the fresh-factor rule must stop."""
    r = httpx.post(f"{base}{prefix}/api/auth/sign-up/email", json={"email": email, "password": PASSWORD},
                   headers={"origin": SITE}, timeout=10)
    assert r.status_code == 200, r.text
    return "banata.session_token=" + r.cookies["banata.session_token"]


def assert_refused(status: int, body: bytes, target: str) -> None:
    assert b'"view"' not in body, (target, status, body[:200])
    assert status == 400 and json.loads(body)["code"] == "INVALID_PATH", (target, status, body[:200])


# Anonymous: each reads as the public /static/x once its dot segments are resolved, and each is
# routed to the protected /api/files/{p:path} view by the app.
TRAVERSALS = [
    "/api/files/../../static/x",
    "/api/files/%2e%2e/%2e%2e/static/x",
    "/api/files/%2E%2e/.%2E/static/x",
    "/api/files/..%2f..%2fstatic/x",
    "/api/files/%2e%2e%2F%2e%2e%2Fstatic/x",
]
# With a password-only session: each escapes the /api/billing/* fresh rule once resolved, and
# each is routed to the billing view.
BILLING = ["/api/billing/pay/..", "/api/billing/x/../../pay", "/api/billing/%2e%2e/pay"]


def test_dot_segments_cannot_reach_a_protected_view_anonymously(server: str) -> None:
    status, body = raw(server, "GET", "/api/files/report")
    assert status == 401 and b'"view"' not in body  # the view is protected
    for target in TRAVERSALS:
        assert_refused(*raw(server, "GET", target), target)


def test_dot_segments_cannot_escape_a_fresh_second_factor_rule(server: str) -> None:
    cookie = session_cookie(server, "pay@example.com")
    headers = {"cookie": cookie, "origin": SITE}
    status, body = raw(server, "POST", "/api/billing/pay", headers)
    assert status == 403 and json.loads(body)["code"] == "FRESH_TWO_FACTOR_REQUIRED", body
    for target in BILLING:
        assert_refused(*raw(server, "POST", target, headers), target)


def test_public_and_auth_paths_with_dot_segments_are_refused_too(server: str) -> None:
    for target in ("/static/../api/files/x", "/static/%2e%2e/api/files/x", "/static/a%5cb", "/static/a\\..\\b",
                   "/static/a%00", "/static/./x", "/api/auth/../../api/files/x", "/api/auth/%2e%2e/get-session",
                   "/api/auth/get-session/.", "/api/files/%252e%252e/%252e%252e/static/x",
                   "/static%2fx", "/static//x"):  # only the raw path shows an encoded slash
        assert_refused(*raw(server, "GET", target), target)
    status, body = raw(server, "GET", "/static/x")
    assert status == 200 and json.loads(body) == {"view": "files", "p": "x"}
    status, body = raw(server, "GET", "/static/.well-known/x..y/...")  # dots inside a name are fine
    assert status == 200 and json.loads(body)["p"] == ".well-known/x..y/...", body


# -- mounted apps: ASGI root_path, WSGI SCRIPT_NAME ------------------------------------------------

def test_traversal_under_an_asgi_root_path_is_refused() -> None:
    with serve(starlette_app(make_auth("/app")), "asgi", root_path="/app") as base:
        status, body = raw(base, "GET", "/api/files/report")
        assert status == 401 and b'"view"' not in body  # judged as /app/api/files/report
        for target in TRAVERSALS:
            assert_refused(*raw(base, "GET", target), target)
        status, body = raw(base, "GET", "/static/x")
        assert status == 200 and json.loads(body)["p"] == "x"


def test_traversal_under_a_wsgi_script_name_mount_is_refused() -> None:
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    def not_found(environ: Any, start_response: Any) -> list[bytes]:
        start_response("404 Not Found", [("content-type", "text/plain")])
        return [b"root"]

    mounted = DispatcherMiddleware(not_found, {"/app": flask_app(make_auth("/app"))})
    with serve(mounted, "wsgi") as base:
        status, body = raw(base, "GET", "/app/api/files/report")
        assert status == 401 and b'"view"' not in body
        for target in TRAVERSALS:
            assert_refused(*raw(base, "GET", "/app" + target), "/app" + target)
        cookie = session_cookie(base, "mounted@example.com", "/app")
        for target in BILLING:
            assert_refused(*raw(base, "POST", "/app" + target, {"cookie": cookie, "origin": SITE}), target)
        status, body = raw(base, "GET", "/app/static/x")
        assert status == 200 and json.loads(body)["p"] == "x"


def test_an_asgi_path_that_leaves_out_the_root_path_is_judged_with_it() -> None:
    """uvicorn puts ``root_path`` in ``path``; the ASGI spec lets other servers leave it out. Either
    way the middleware judges the path the browser sees (Starlette routes both forms alike)."""
    import anyio

    reached: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def call(app: Any, path: str, root_path: str) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "root_path": root_path,
                 "query_string": b"", "headers": [], "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
        anyio.run(app, scope, receive, send)
        return int(sent[0]["status"])

    app = asgi_adapter.BanataMiddleware(inner, make_auth("/app"))
    assert call(app, "/static/x", "/app") == 200 and reached == ["/static/x"]  # /app/static/* is public
    assert call(app, "/app/static/x", "/app") == 200
    assert call(app, "/api/files/x", "/app") == 401 and call(app, "/app/api/files/x", "/app") == 401
    assert call(app, "/static/../api/files/x", "/app") == 400
    # A path that merely starts with the same letters does not include the root path: /st + /static/x.
    app = asgi_adapter.BanataMiddleware(inner, make_auth("/st"))
    assert call(app, "/static/x", "/st") == 200 and call(app, "/st/static/x", "/st") == 200


@pytest.mark.parametrize(("path", "ambiguous"), [
    ("/", False), ("/api/me", False), ("/api/me/", False), ("/.well-known/x", False), ("/a..b/...", False),
    ("/search/100%25", False), ("/caf%C3%A9", False), ("/%ff%fe", False), ("/a%20b", False), ("*", False),
    ("/..", True), ("/.", True), ("..", True), ("/a/./b", True), ("/a/../b", True), ("/a/b/..", True),
    ("/a//b", True), ("//a", True), ("/a\\b", True), ("/a\x00", True),
    ("/%2e%2e/a", True), ("/%2E%2e/a", True), ("/.%2e/a", True), ("/%2e/a", True), ("/a%2fb", True),
    ("/a%2Fb", True), ("/a%5cb", True), ("/a%00", True), ("/%252e%252e/a", True), ("/a%25252fb", True),
    ("/%2525252525252e", True),
])
def test_ambiguous_paths(path: str, ambiguous: bool) -> None:
    from banata_middleware.policy import ambiguous_path

    assert ambiguous_path(path) is ambiguous

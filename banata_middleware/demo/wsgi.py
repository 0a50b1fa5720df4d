"""The demo's sample app on plain Werkzeug, behind the WSGI middleware: the same pages, static files
and routes as :func:`banata_middleware.demo.app.starlette_app` (both serve :mod:`.pages`), for
``banata-mfa demo --framework werkzeug``. Needs only the ``werkzeug`` extra: no Starlette here."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from ..adapters.werkzeug import BanataMiddleware
from ..http import Identity
from ..service import BanataAuth
from . import pages

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["serve", "werkzeug_app"]


def _html(text: str) -> Response:
    return Response(text, mimetype="text/html", headers=pages.PAGE_HEADERS)


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), status=status,
                    mimetype="application/json", headers=headers)


def _identity(request: Request) -> Identity:
    identity: Identity = request.environ["banata"]
    return identity


def page(request: Request, path: str) -> Response:
    return _html(pages.page(path))


def dashboard(request: Request) -> Response:
    return _html(pages.dashboard_page(_identity(request)))


def outbox(request: Request) -> Response:
    return _html(pages.outbox_page(_identity(request)))


def me(request: Request) -> Response:
    ident = _identity(request)
    return _json({"userId": ident.user_id, "aal": ident.aal})


def sign_in_methods(request: Request) -> Response:
    return _json({"amr": list(_identity(request).amr)})


def sensitive(request: Request) -> Response:
    return _json({"ok": True})


def static(request: Request, name: str) -> Response:
    asset = pages.static_asset(name)
    if asset is None:
        raise NotFound()
    return Response(asset.body, content_type=asset.content_type, headers={"cache-control": "no-cache"})


def qr(request: Request) -> Response:
    body = request.stream.read(pages.QR_MAX_BODY + 1)
    status, payload = pages.qr_reply(body)
    return _json(payload, status, {"cache-control": "no-store"})


_VIEWS: dict[str, Callable[..., Response]] = {
    "page": page, "dashboard": dashboard, "outbox": outbox, "me": me, "amr": sign_in_methods, "sensitive": sensitive,
    "static": static, "qr": qr,
}
_URLS = Map([
    *(Rule(path, endpoint="page", methods=["GET"], defaults={"path": path}) for path in pages.PAGES),
    Rule("/dashboard", endpoint="dashboard", methods=["GET"]),
    Rule("/outbox", endpoint="outbox", methods=["GET"]),
    Rule("/api/me", endpoint="me", methods=["GET"]),
    Rule("/api/amr", endpoint="amr", methods=["GET"]),
    Rule("/api/sensitive", endpoint="sensitive", methods=["POST"]),
    Rule("/demo/qr", endpoint="qr", methods=["POST"]),
    Rule("/static/<name>", endpoint="static", methods=["GET"]),
])


def sample_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The unprotected sample app (what the middleware wraps)."""
    request = Request(environ)
    try:
        endpoint, args = _URLS.bind_to_environ(environ).match()
        response: WSGIApplication = _VIEWS[endpoint](request, **args)
    except HTTPException as exc:
        response = exc
    return response(environ, start_response)


def werkzeug_app(auth: BanataAuth) -> BanataMiddleware:
    """The sample app behind the WSGI middleware (the twin of ``starlette_app``)."""
    return BanataMiddleware(sample_app, auth)


def serve(app: WSGIApplication, host: str, port: int) -> int:
    """Serve ``app`` on a threaded Werkzeug server until SIGTERM or SIGINT; 0 on a clean stop."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no per-request access log
    try:
        server = make_server(host, port, app, threaded=True)
    except OSError as exc:
        print(f"banata-mfa demo: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    received: list[int] = []  # the handler only appends: no lock a signal could interrupt
    previous = {sig: signal.signal(sig, lambda signum, _: received.append(signum))
                for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    worker.start()
    try:
        print(f"banata-mfa demo listening on http://{host}:{server.port}", flush=True)
        while not received:
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0

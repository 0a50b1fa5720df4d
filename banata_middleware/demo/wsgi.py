"""The demo's sample app on plain Werkzeug, behind the WSGI middleware: the same pages and routes
as :func:`banata_middleware.demo.app.starlette_app`, for ``banata-mfa demo --framework werkzeug``."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from ..adapters.werkzeug import BanataMiddleware
from ..http import Identity
from ..service import BanataAuth
from .app import _INDEX, _SIGN_IN

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["serve", "werkzeug_app"]


def _html(page: str) -> Response:
    return Response(page, mimetype="text/html")


def _json(payload: Any) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False, separators=(",", ":")), mimetype="application/json")


def _identity(request: Request) -> Identity:
    identity: Identity = request.environ["banata"]
    return identity


def index(request: Request) -> Response:
    return _html(_INDEX)


def sign_in_page(request: Request) -> Response:
    return _html(_SIGN_IN)


def me(request: Request) -> Response:
    ident = _identity(request)
    return _json({"userId": ident.user_id, "aal": ident.aal})


def dashboard(request: Request) -> Response:
    # Same page as demo/app.py's dashboard view (which builds it inline).
    ident = _identity(request)
    return _html(f"<!doctype html><title>Dashboard</title><h1>Dashboard</h1><p>Signed in as "
                 f"<code>{ident.user_id}</code> (AAL{ident.aal}).</p>")


def sensitive(request: Request) -> Response:
    return _json({"ok": True})


_VIEWS: dict[str, Callable[[Request], Response]] = {
    "index": index, "sign_in": sign_in_page, "me": me, "dashboard": dashboard, "sensitive": sensitive,
}
_URLS = Map([
    Rule("/", endpoint="index", methods=["GET"]),
    Rule("/sign-in", endpoint="sign_in", methods=["GET"]),
    Rule("/api/me", endpoint="me", methods=["GET"]),
    Rule("/dashboard", endpoint="dashboard", methods=["GET"]),
    Rule("/api/sensitive", endpoint="sensitive", methods=["POST"]),
])


def sample_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The unprotected sample app (what the middleware wraps)."""
    request = Request(environ)
    try:
        endpoint, _ = _URLS.bind_to_environ(environ).match()
        response: WSGIApplication = _VIEWS[endpoint](request)
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

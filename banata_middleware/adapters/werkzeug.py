"""WSGI middleware: wrap any WSGI app (Flask, Django, Pyramid, Bottle, plain Werkzeug).

It serves the auth endpoints under ``config.base_path``, refuses protected paths per the contract,
and passes everything else through with the caller's ``Identity`` in ``environ["banata"]``
(and the ``BanataAuth`` in ``environ["banata.auth"]``, for view helpers). Bodies are read only
for the auth endpoints (not for a GET), and never past the size cap.

.. code-block:: python

    # Flask
    from banata_middleware.adapters.werkzeug import BanataMiddleware
    app.wsgi_app = BanataMiddleware(app.wsgi_app, auth)

    # Django, in wsgi.py
    from django.core.wsgi import get_wsgi_application
    application = BanataMiddleware(get_wsgi_application(), auth)

Paths are matched as the browser sees them (``SCRIPT_NAME + PATH_INFO``), like the ASGI adapter's
``scope["path"]``: an app mounted under ``/app`` configures ``/app/api/auth`` and so on.

``auth.handle`` blocks on the store (one round trip for a pass-through), so serve with threads
(``gunicorn --threads``, waitress) rather than one request at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar, overload
from urllib.parse import parse_qsl

from .._extras import missing_extra

try:
    from werkzeug.http import HTTP_STATUS_CODES
    from werkzeug.urls import iri_to_uri
    from werkzeug.wrappers import Response as WsgiResponse
    from werkzeug.wsgi import get_content_length
except ModuleNotFoundError as exc:
    raise missing_extra(__name__, "werkzeug", exc) from exc

from ..errors import AuthError
from ..http import NO_QUERY, Identity, Request, Response, error_response
from ..service import BanataAuth

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["BanataMiddleware", "fresh_second_factor_refusal"]

_CHUNK = 64 * 1024
_STATUS_LINES = {code: f"{code} {reason.upper()}" for code, reason in HTTP_STATUS_CODES.items()}
_UNPREFIXED = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}
# The environ keys of the headers the flows read, made once (the rest are made when asked for).
_ENVIRON_KEYS = {**{name: "HTTP_" + name.upper().replace("-", "_") for name in (
    "cookie", "authorization", "accept", "origin", "referer", "user-agent", "x-forwarded-for")}, **_UNPREFIXED}
T = TypeVar("T")


class _EnvironHeaders(Mapping[str, str]):
    """The request headers as the flows want them (lower-case names), read from the environ on
    demand: a pass-through looks at two or three headers, so no dict is built for it."""

    __slots__ = ("environ",)

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.environ = environ

    @staticmethod
    def _key(name: str) -> str:
        return _ENVIRON_KEYS.get(name) or "HTTP_" + name.upper().replace("-", "_")

    def __getitem__(self, name: str) -> str:
        value: str = self.environ[self._key(name)]
        return value

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, /, default: str | T) -> str | T: ...
    def get(self, name: str, /, default: object = None) -> object:
        # _key, inlined: a pass-through reads Cookie through here
        return self.environ.get(_ENVIRON_KEYS.get(name) or "HTTP_" + name.upper().replace("-", "_"), default)

    def __iter__(self) -> Iterator[str]:
        for key in self.environ:
            if key[:5] == "HTTP_":
                yield key[5:].replace("_", "-").lower()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                yield key.replace("_", "-").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self)


class BanataMiddleware:
    """``BanataMiddleware(app, auth)``: ``app`` is the WSGI app to protect, ``auth`` the configured
    :class:`~banata_middleware.BanataAuth` (``RedisStore`` when more than one process serves the app)."""

    def __init__(self, app: WSGIApplication, auth: BanataAuth) -> None:
        self.app = app
        self.auth = auth
        self.max_body = auth.config.policies.max_body_bytes
        self.base, self.base_slash = auth.config.base_path, auth.config.base_path + "/"

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path: str = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        if not path.isascii():
            # PEP 3333 hands the path over as latin-1; decode it as UTF-8 like ASGI servers do.
            path = path.encode("latin-1").decode("utf-8", "replace")
        # Every field by position (method, path, headers, client, query, body, body_too_large,
        # raw_path, websocket): keywords cost a Python call more than the whole rest of it.
        request = Request(environ.get("REQUEST_METHOD", "GET"), path, _EnvironHeaders(environ),
                          environ.get("REMOTE_ADDR") or "", NO_QUERY, None, False, _raw_path(environ),
                          "websocket" in environ.get("HTTP_UPGRADE", "").lower())
        if path.startswith(self.base) and (path == self.base or path.startswith(self.base_slash)):  # is_endpoint
            request.query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
            if request.method != "GET":  # no GET endpoint reads a body (get-session is polled)
                request.body, request.body_too_large = self._read_body(environ)
        result = self.auth.handle(request)
        if isinstance(result, Response):
            return _render(result, environ, start_response)
        if result is not None:
            environ["banata"] = result
        environ["banata.auth"] = self.auth
        return self.app(environ, start_response)

    def _read_body(self, environ: WSGIEnvironment) -> tuple[bytes, bool]:
        """The body, or ``(b"", True)`` past the cap. A too-large Content-Length is trusted unread;
        without one the body is read only when the server terminates the stream (chunked)."""
        declared = get_content_length(environ)  # None: no Content-Length, or chunked
        if declared is not None and declared > self.max_body:
            return b"", True
        if declared is None:
            if not environ.get("wsgi.input_terminated"):
                return b"", False
            limit = self.max_body + 1
        else:
            limit = declared
        stream = environ["wsgi.input"]
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = stream.read(min(limit - size, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > self.max_body:
            return b"", True
        return b"".join(chunks), False


def _raw_path(environ: WSGIEnvironment) -> str:
    """The path as the client sent it, still percent-encoded, when the server says
    (``REQUEST_URI``: mod_wsgi, uWSGI, Werkzeug; ``RAW_URI``: gunicorn, Werkzeug); else empty.
    PATH_INFO is already decoded, so ``%2f`` in it can no longer be told from ``/``."""
    raw: str = environ.get("REQUEST_URI") or environ.get("RAW_URI") or ""
    if "?" in raw or "#" in raw:
        raw = raw.partition("?")[0].partition("#")[0]
    if raw and not raw.startswith("/"):  # absolute form: GET http://host/path HTTP/1.1
        scheme, sep, rest = raw.partition("://")
        raw = "/" + rest.partition("/")[2] if sep and scheme.isalpha() else raw
    return raw


def _render(response: Response, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """What Werkzeug's ``Response(body, status, headers)`` sends for our replies (each has a
    Content-Type; none is a 1xx, 204 or 304), without building one: the headers as they are
    (repeated Set-Cookie kept; a redirect's target as Werkzeug writes it), Content-Length last,
    no body for HEAD."""
    body = response.body
    headers = [("Location", iri_to_uri(v)) if k.lower() == "location" else (k, v) for k, v in response.headers]
    headers.append(("Content-Length", str(len(body))))
    start_response(_STATUS_LINES.get(response.status) or f"{response.status} UNKNOWN", headers)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


def fresh_second_factor_refusal(environ: WSGIEnvironment, max_age: int) -> WsgiResponse | None:
    """None when the caller's last second factor is at most ``max_age`` seconds old (by the auth's
    clock), else the contract's refusal: 403 ``FRESH_TWO_FACTOR_REQUIRED`` (401 ``UNAUTHORIZED``
    when the request carries no identity, e.g. on a public path). For view-level checks; prefer
    ``BanataAuthConfig.fresh_paths`` where a path pattern says it."""
    auth = environ.get("banata.auth")
    if not isinstance(auth, BanataAuth):
        raise RuntimeError("no BanataMiddleware in front of this app: wrap it with BanataMiddleware(app, auth)")
    identity = environ.get("banata")
    if not isinstance(identity, Identity):
        error = AuthError(401, "UNAUTHORIZED", "sign in first")
    else:
        verified = identity.mfa_verified_at
        if verified is not None and auth.config.clock.now() - verified <= max_age:
            return None
        error = AuthError(403, "FRESH_TWO_FACTOR_REQUIRED",
                          f"confirm with a second factor (needed within the last {max_age} s)")
    refusal = error_response(error)
    return WsgiResponse(refusal.body, refusal.status, refusal.headers)

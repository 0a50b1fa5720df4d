"""Pure ASGI middleware: ``app = BanataMiddleware(app, auth)`` for Starlette, FastAPI, Litestar,
Django ASGI or any ASGI app.

It serves the auth endpoints under ``config.base_path``, refuses protected paths per the contract,
and passes everything else through with the caller's ``Identity`` in ``scope["banata"]``.
Bodies are read only for the auth endpoints (not for a GET), and never past the size cap.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar, overload
from urllib.parse import parse_qsl

from .._extras import missing_extra

try:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ModuleNotFoundError as exc:
    raise missing_extra(__name__, "starlette", exc) from exc

from ..http import NO_QUERY, Request, Response
from ..service import BanataAuth

__all__ = ["BanataMiddleware"]

T = TypeVar("T")
_NOT_YET: dict[bytes, bytes] = {}  # _ScopeHeaders.one after the first look-up (never written)


class _ScopeHeaders(Mapping[str, str]):
    """The request headers as the flows want them (lower-case names, str values), read from the
    scope's list on demand: a pass-through looks at one or two (Cookie, Authorization), so no dict
    of all of them is decoded for it. Repeated lines are one value: Cookie joined with "; " (HTTP/2
    may split it over several lines), any other with ", " (RFC 9110 5.3: X-Forwarded-For); Set-Cookie,
    never to be joined, is a response header and not read here."""

    __slots__ = ("one", "raw", "repeated")

    def __init__(self, raw: Sequence[tuple[bytes, bytes]], endpoint: bool) -> None:
        self.raw = raw
        # name -> value (built in C; right for every name unless a line is repeated): made at once for
        # an auth endpoint, which reads several headers, else at the second look-up. A pass-through
        # reads Cookie alone, and one pass over the list costs less than a dict made and freed.
        self.one: dict[bytes, bytes] | None = None
        self.repeated = True
        if endpoint:
            one = self.one = dict(raw)
            self.repeated = len(one) != len(raw)

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, /, default: str | T) -> str | T: ...
    def get(self, name: str, /, default: object = None) -> object:
        key = name.encode("latin-1")
        one = self.one
        if one is None:  # a pass-through's first look-up: the pass over the list below
            self.one = _NOT_YET
        else:
            if one is _NOT_YET:  # the second: the dict
                one = self.one = dict(self.raw)
                self.repeated = len(one) != len(self.raw)
            if not self.repeated:
                value = one.get(key)
                return default if value is None else value.decode("latin-1")
        # Every line of that name, joined (latin-1 decodes byte by byte: joining first is the same).
        found: bytes | None = None
        for k, v in self.raw:
            if k == key:
                found = v if found is None else found + (b"; " if key == b"cookie" else b", ") + v
        return default if found is None else found.decode("latin-1")

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k.decode("latin-1") for k, _ in self.raw))

    def __len__(self) -> int:
        return len({k for k, _ in self.raw})


class BanataMiddleware:
    def __init__(self, app: ASGIApp, auth: BanataAuth) -> None:
        self.app = app
        self.auth = auth
        self.max_body = auth.config.policies.max_body_bytes
        self.base, self.base_slash = auth.config.base_path, auth.config.base_path + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root_path: str = scope.get("root_path", "")
        if root_path and path != root_path and not path.startswith(root_path + "/"):
            # Servers differ on whether path includes the mount prefix (uvicorn's does); judge the
            # path the browser sees, as Starlette's own routing reads both forms.
            path = root_path + path
        raw = scope["headers"]
        # gateway.is_endpoint, its first test the one every other path fails
        endpoint = (path.startswith(self.base) and kind == "http"
                    and (path == self.base or path.startswith(self.base_slash)))
        # ASGI allows any iterable; a list or tuple, as servers send, can be read more than once.
        headers = _ScopeHeaders(raw if type(raw) is list or type(raw) is tuple else list(raw), endpoint)
        client = scope.get("client")
        # Every field by position (method, path, headers, client, query, body, body_too_large,
        # raw_path, websocket): keywords cost a Python call more than the whole rest of it.
        request = Request(scope.get("method", "GET"), path, headers, client[0] if client else "", NO_QUERY, None,
                          False, (scope.get("raw_path") or b"").decode("latin-1"), kind == "websocket")
        if endpoint:
            query: bytes = scope.get("query_string", b"")
            if query:
                request.query = dict(parse_qsl(query.decode("latin-1")))
            if request.method != "GET":  # no GET endpoint reads a body (get-session is polled)
                request.body, request.body_too_large = await self._read_body(receive, headers)
        result = await self.auth.ahandle(request)
        if result is None:
            await self.app(scope, receive, send)
        elif type(result) is Response:
            if kind == "websocket":
                # Refused before accept: the server answers the handshake with 403.
                await send({"type": "websocket.close", "code": 1008})
                return
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in result.headers]
            # Without a length, servers send the body chunked (uvicorn does): more bytes, more framing.
            raw.append((b"content-length", b"%d" % len(result.body)))
            await send({"type": "http.response.start", "status": result.status, "headers": raw})
            await send({"type": "http.response.body", "body": result.body})
        else:
            scope["banata"] = result
            await self.app(scope, receive, send)

    async def _read_body(self, receive: Receive, headers: Mapping[str, str]) -> tuple[bytes, bool]:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            return b"", True
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] != "http.request":
                return b"", False
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", True
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False

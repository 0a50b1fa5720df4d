"""Pure ASGI middleware: ``app = BanataMiddleware(app, auth)`` for Starlette, FastAPI, Litestar,
Django ASGI or any ASGI app.

It serves the auth endpoints under ``config.base_path``, refuses protected paths per the contract,
and passes everything else through with the caller's ``Identity`` in ``scope["banata"]``.
Bodies are read only for the auth endpoints, and never past the size cap.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from .._extras import missing_extra

try:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ModuleNotFoundError as exc:
    raise missing_extra(__name__, "starlette", exc) from exc

from ..http import Request, Response
from ..service import BanataAuth

__all__ = ["BanataMiddleware"]

# The only request headers the flows read, with their names as str; decoding just these keeps
# pass-through cheap.
_WANTED = {name: name.decode("latin-1") for name in (
    b"cookie", b"authorization", b"accept", b"origin", b"referer", b"content-type", b"content-length",
    b"user-agent", b"x-forwarded-for",
)}


class BanataMiddleware:
    def __init__(self, app: ASGIApp, auth: BanataAuth) -> None:
        self.app = app
        self.auth = auth
        self.max_body = auth.config.policies.max_body_bytes

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
        headers: dict[str, str] = {}
        wanted = _WANTED
        for k, v in scope["headers"]:
            name = wanted.get(k)
            if name is None:
                continue
            if name not in headers:
                headers[name] = v.decode("latin-1")
            elif name == "cookie":  # HTTP/2 may split Cookie into several lines
                headers[name] += "; " + v.decode("latin-1")
            else:  # RFC 9110 5.3: repeated lines are one comma-separated list (X-Forwarded-For);
                # Set-Cookie, never to be joined, is a response header and not read here.
                headers[name] += ", " + v.decode("latin-1")
        client = scope.get("client")
        request = Request(scope.get("method", "GET"), path, headers, client[0] if client else "",
                          raw_path=(scope.get("raw_path") or b"").decode("latin-1"),
                          websocket=kind == "websocket")
        if kind == "http" and self.auth.gateway.is_endpoint(path):
            query: bytes = scope.get("query_string", b"")
            if query:
                request.query = dict(parse_qsl(query.decode("latin-1")))
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

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> tuple[bytes, bool]:
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

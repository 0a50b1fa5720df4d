"""The demo's sample app on Starlette, behind the ASGI middleware (``banata-mfa demo``): the pages
of :mod:`.pages` (sign-up, sign-in, the second-factor page, security settings, dashboard), their
static files, protected JSON, and a path that needs a second factor no older than 300 s.

Protected views read the caller from ``request.scope["banata"]``, the identity the middleware hands
to the app; the middleware itself answers ``/api/auth/*`` and refuses what needs refusing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from ..adapters.starlette import BanataMiddleware
from ..http import Identity
from ..service import BanataAuth
from . import pages
from .pages import FRESH_MAX_AGE, demo_config

__all__ = ["FRESH_MAX_AGE", "demo_config", "starlette_app"]


def _identity(request: StarletteRequest) -> Identity:
    identity: Identity = request.scope["banata"]
    return identity


def _html(text: str) -> HTMLResponse:
    return HTMLResponse(text, headers=pages.PAGE_HEADERS)


def _page(path: str) -> Callable[[StarletteRequest], Awaitable[HTMLResponse]]:
    async def view(request: StarletteRequest) -> HTMLResponse:
        return _html(pages.page(path))

    return view


async def dashboard(request: StarletteRequest) -> HTMLResponse:
    return _html(pages.dashboard_page(_identity(request)))


async def outbox(request: StarletteRequest) -> HTMLResponse:
    return _html(pages.outbox_page(_identity(request)))


async def me(request: StarletteRequest) -> JSONResponse:
    ident = _identity(request)
    return JSONResponse({"userId": ident.user_id, "aal": ident.aal})


async def sign_in_methods(request: StarletteRequest) -> JSONResponse:
    """How the caller signed in (``Identity.amr``: RFC 8176 values)."""
    return JSONResponse({"amr": list(_identity(request).amr)})


async def sensitive(request: StarletteRequest) -> JSONResponse:
    return JSONResponse({"ok": True})


async def static(request: StarletteRequest) -> Response:
    asset = pages.static_asset(request.path_params["name"])
    if asset is None:
        return PlainTextResponse("not found", status_code=404)
    return Response(asset.body, media_type=asset.content_type, headers={"cache-control": "no-cache"})


async def qr(request: StarletteRequest) -> JSONResponse:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > pages.QR_MAX_BODY:
            break
    status, payload = pages.qr_reply(body)
    return JSONResponse(payload, status_code=status, headers={"cache-control": "no-store"})


def starlette_app(auth: BanataAuth) -> BanataMiddleware:
    inner = Starlette(routes=[
        *(Route(path, _page(path), methods=["GET"]) for path in pages.PAGES),
        Route("/dashboard", dashboard, methods=["GET"]),
        Route("/outbox", outbox, methods=["GET"]),
        Route("/api/me", me, methods=["GET"]),
        Route("/api/amr", sign_in_methods, methods=["GET"]),
        Route("/api/sensitive", sensitive, methods=["POST"]),
        Route("/demo/qr", qr, methods=["POST"]),
        Route("/static/{name}", static, methods=["GET"]),
    ])
    return BanataMiddleware(inner, auth)

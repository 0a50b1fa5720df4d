"""The sample app behind ``banata-mfa demo``: one public page, protected JSON and HTML, and a
path that needs a second factor no older than 300 s."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from ..adapters.starlette import BanataMiddleware
from ..config import AuthMethods, BanataAuthConfig, PasskeyConfig
from ..http import Identity
from ..service import BanataAuth

__all__ = ["demo_config", "starlette_app"]

FRESH_MAX_AGE = 300

_INDEX = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>banata-mfa demo</title></head>
<body><h1>banata-mfa demo</h1>
<p>Endpoints under <code>/api/auth</code> (sign-up, sign-in, two-factor); protected: <code>/api/me</code>,
<code>/dashboard</code>; fresh second factor: <code>POST /api/sensitive</code>.</p>
<p><a href="/dashboard">Dashboard</a></p></body></html>"""

_SIGN_IN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head>
<body><h1>Sign in</h1><p>POST <code>/api/auth/sign-in/email</code> with <code>{"email", "password"}</code>.</p>
</body></html>"""


def demo_config(*, secret: str, site_url: str, **overrides: Any) -> BanataAuthConfig:
    options: dict[str, Any] = {
        "app_name": "Banata Demo",
        "site_url": site_url,
        "secret": secret,
        "public_paths": ("/", "/sign-in", "/favicon.ico"),
        "fresh_paths": {"/api/sensitive": FRESH_MAX_AGE},
        "sign_in_page": "/sign-in",
        "auth_methods": AuthMethods(email_password=True, two_factor=True, passkey=True),
        "passkey": PasskeyConfig(rp_id=urlsplit(site_url).hostname or "localhost", rp_name="Banata Demo",
                                 origins=(site_url.rstrip("/"),)),
    }
    options.update(overrides)
    return BanataAuthConfig(**options)


def _identity(request: StarletteRequest) -> Identity:
    identity: Identity = request.scope["banata"]
    return identity


async def index(request: StarletteRequest) -> HTMLResponse:
    return HTMLResponse(_INDEX)


async def sign_in_page(request: StarletteRequest) -> HTMLResponse:
    return HTMLResponse(_SIGN_IN)


async def me(request: StarletteRequest) -> JSONResponse:
    ident = _identity(request)
    return JSONResponse({"userId": ident.user_id, "aal": ident.aal})


async def dashboard(request: StarletteRequest) -> HTMLResponse:
    ident = _identity(request)
    return HTMLResponse(f"<!doctype html><title>Dashboard</title><h1>Dashboard</h1><p>Signed in as "
                        f"<code>{ident.user_id}</code> (AAL{ident.aal}).</p>")


async def sensitive(request: StarletteRequest) -> JSONResponse:
    return JSONResponse({"ok": True})


def starlette_app(auth: BanataAuth) -> BanataMiddleware:
    inner = Starlette(routes=[
        Route("/", index),
        Route("/sign-in", sign_in_page),
        Route("/api/me", me),
        Route("/dashboard", dashboard),
        Route("/api/sensitive", sensitive, methods=["POST"]),
    ])
    return BanataMiddleware(inner, auth)

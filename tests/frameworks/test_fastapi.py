"""A FastAPI app behind the ASGI middleware (``app.add_middleware(BanataMiddleware, auth=auth)``)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from fastapi import FastAPI, Request
from harness import SECRET, SITE, SyncASGITransport

from banata_middleware import BanataAuth, BanataAuthConfig, PasswordHashing
from banata_middleware.adapters.starlette import BanataMiddleware
from banata_middleware.simulator.clocks import FrozenClock

from .journey import two_factor_sign_in


def make_app(clock: FrozenClock) -> FastAPI:
    auth = BanataAuth(BanataAuthConfig(
        app_name="FastAPI Test", site_url=SITE, secret=SECRET, clock=clock, public_paths=("/",),
        password_hashing=PasswordHashing(n=2**8),
    ))
    app = FastAPI()

    @app.get("/")
    def index() -> str:
        return "home"

    @app.get("/me")
    def me(request: Request) -> dict[str, object]:
        ident = request.scope["banata"]
        return {"userId": ident.user_id, "aal": ident.aal}

    app.add_middleware(BanataMiddleware, auth=auth)
    return app


@pytest.fixture
def client(clock: FrozenClock) -> Iterator[httpx.Client]:
    # The suite's sync-over-ASGI transport: one event loop for the test (starlette's TestClient
    # now warns about httpx).
    with start_blocking_portal() as portal, \
            httpx.Client(transport=SyncASGITransport(make_app(clock), portal), base_url=SITE) as c:
        yield c


def test_two_factor_sign_in_reaches_the_fastapi_view(client: httpx.Client, clock: FrozenClock) -> None:
    two_factor_sign_in(client, clock, protected="/me")
    assert client.get("/").json() == "home"

"""A Flask app behind the WSGI middleware (``app.wsgi_app = BanataMiddleware(app.wsgi_app, auth)``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import flask
import httpx
import pytest
from harness import PASSWORD, SECRET, SITE

from banata_middleware import BanataAuth, BanataAuthConfig, PasswordHashing
from banata_middleware.adapters.flask import current_identity, require_fresh_second_factor
from banata_middleware.adapters.werkzeug import BanataMiddleware
from banata_middleware.simulator.clocks import FrozenClock

from .journey import ORIGIN, post, two_factor_sign_in


def make_app(clock: FrozenClock) -> flask.Flask:
    auth = BanataAuth(BanataAuthConfig(
        app_name="Flask Test", site_url=SITE, secret=SECRET, clock=clock,
        public_paths=("/", "/about"), password_hashing=PasswordHashing(n=2**8),
    ))
    app = flask.Flask(__name__)

    @app.get("/")
    def index() -> str:
        return "home"

    @app.get("/me")
    def me() -> dict[str, object]:
        ident = current_identity()
        return {"userId": ident.user_id, "aal": ident.aal}

    @app.post("/transfer")
    @require_fresh_second_factor(max_age=300)
    def transfer() -> dict[str, object]:
        return {"sent": flask.request.get_json()["amount"]}

    @app.get("/about")
    @require_fresh_second_factor(max_age=300)
    def about() -> str:  # a public path: the middleware attaches no identity
        return "never"

    app.wsgi_app = BanataMiddleware(app.wsgi_app, auth)  # type: ignore[method-assign]
    return app


@pytest.fixture
def client(clock: FrozenClock) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.WSGITransport(app=make_app(clock)), base_url=SITE) as c:
        yield c


def test_two_factor_sign_in_reaches_the_flask_view(client: httpx.Client, clock: FrozenClock) -> None:
    two_factor_sign_in(client, clock, protected="/me")
    assert client.get("/").text == "home"


def test_fresh_second_factor_decorator_asks_for_a_recent_code(client: httpx.Client, clock: FrozenClock) -> None:
    journey = two_factor_sign_in(client, clock, protected="/me")
    assert post(client, "/transfer", {"amount": 5}).json() == {"sent": 5}

    clock.advance(301)
    r = post(client, "/transfer", {"amount": 5})
    assert r.status_code == 403 and r.json()["code"] == "FRESH_TWO_FACTOR_REQUIRED" and r.json()["message"]

    r = post(client, "/api/auth/two-factor/verify-totp", {"code": journey.device.code()})  # step-up
    assert r.status_code == 200 and r.json()["status"] is True, r.text
    assert post(client, "/transfer", {"amount": 7}).json() == {"sent": 7}


def test_fresh_second_factor_decorator_without_an_identity_is_401(client: httpx.Client) -> None:
    r = client.get("/about")
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"


def test_flask_test_client_drives_the_middleware_too(clock: FrozenClock) -> None:
    """Werkzeug's own test environ (EnvironBuilder) rather than httpx's."""
    client = make_app(clock).test_client()
    r = client.post("/api/auth/sign-up/email", json={"email": "t@example.com", "password": PASSWORD},
                    headers=ORIGIN)
    assert r.status_code == 200 and client.get_cookie("banata.session_token") is not None
    assert json.loads(client.get("/me").data) == {"userId": json.loads(r.data)["user"]["id"], "aal": 1}
    r = client.post("/transfer", json={"amount": 1}, headers=ORIGIN)
    assert (r.status_code, json.loads(r.data)["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED")

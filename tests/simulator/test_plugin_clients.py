"""The clients behind ``mfa_client``: ``asgi_client`` (portal, lifespan), ``wsgi_client``, ``app_client``."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from flask import Flask

from banata_middleware.simulator.testing import app_client, asgi_client, is_asgi_app, site_origin, wsgi_client

Scope = dict[str, Any]


class RecordingApp:
    """A raw ASGI app that answers every request with what it saw, and records lifespan events."""

    def __init__(self, *, lifespan: str = "ok") -> None:
        self.lifespan = lifespan
        self.events: list[str] = []
        self.threads: set[int] = set()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.threads.add(threading.get_ident())
        if scope["type"] == "lifespan":
            if self.lifespan == "unsupported":
                raise RuntimeError("no lifespan here")
            while True:
                message = await receive()
                self.events.append(message["type"])
                kind = message["type"].split(".")[1]
                if self.lifespan == f"fail-{kind}":
                    await send({"type": f"lifespan.{kind}.failed", "message": f"{kind} went wrong"})
                else:
                    await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        body = await receive()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        payload = repr({"client": scope["client"], "origin": headers.get("origin"), "body": body["body"]})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": payload.encode()})


def test_asgi_client_sends_the_origin_and_address_and_keeps_one_loop() -> None:
    app = RecordingApp()
    with asgi_client(app, base_url="https://shop.example:8443", client_address=("10.1.2.3", 1234)) as client:
        first = eval(client.post("/x", content=b"hello").text)
        client.get("/y")
        assert first == {"client": ("10.1.2.3", 1234), "origin": "https://shop.example:8443", "body": b"hello"}
    assert len(app.threads) == 1 and threading.get_ident() not in app.threads


def test_asgi_client_origin_can_be_set_or_left_out() -> None:
    with asgi_client(RecordingApp(), origin="http://other.example") as client:
        assert eval(client.get("/").text)["origin"] == "http://other.example"
    with asgi_client(RecordingApp(), origin="") as client:
        assert eval(client.get("/").text)["origin"] is None


def test_asgi_client_runs_the_lifespan_around_its_life() -> None:
    app = RecordingApp()
    client = asgi_client(app)
    assert app.events == ["lifespan.startup"]
    client.get("/")
    client.close()
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


def test_asgi_client_without_lifespan_support_or_when_told_not_to() -> None:
    with asgi_client(RecordingApp(lifespan="unsupported")) as client:
        assert client.get("/").status_code == 200
    app = RecordingApp()
    with asgi_client(app, lifespan=False) as client:
        assert client.get("/").status_code == 200
    assert app.events == []


def test_asgi_client_reports_a_failed_startup_or_shutdown() -> None:
    with pytest.raises(RuntimeError, match="startup failed: startup went wrong"):
        asgi_client(RecordingApp(lifespan="fail-startup"))
    client = asgi_client(RecordingApp(lifespan="fail-shutdown"))
    with pytest.raises(RuntimeError, match="shutdown failed: shutdown went wrong"):
        client.close()


def test_fastapi_lifespan_runs_before_the_first_request_and_after_close() -> None:
    seen: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        seen.append("up")
        yield
        seen.append("down")

    api = FastAPI(lifespan=lifespan)

    @api.get("/ping")
    def ping() -> dict[str, list[str]]:
        return {"seen": seen}

    with asgi_client(api) as client:
        assert client.get("/ping").json() == {"seen": ["up"]}
    assert seen == ["up", "down"]


def test_compressed_responses_are_decoded_once() -> None:
    from starlette.middleware.gzip import GZipMiddleware

    api = FastAPI()
    api.add_middleware(GZipMiddleware, minimum_size=0)

    @api.get("/big")
    def big() -> dict[str, str]:
        return {"text": "abc" * 1000}

    with asgi_client(api) as client:
        response = client.get("/big", headers={"accept-encoding": "gzip"})
        assert response.headers["content-encoding"] == "gzip"
        assert response.json() == {"text": "abc" * 1000}


def wsgi_echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("content-type", "text/plain")])
    return [repr({"addr": environ["REMOTE_ADDR"], "origin": environ.get("HTTP_ORIGIN")}).encode()]


def test_wsgi_client_sends_the_origin_and_address() -> None:
    with wsgi_client(wsgi_echo, base_url="http://shop.example", remote_addr="10.9.8.7") as client:
        assert eval(client.get("/").text) == {"addr": "10.9.8.7", "origin": "http://shop.example"}


def test_app_client_tells_asgi_from_wsgi() -> None:
    flask_app = Flask(__name__)
    for app, asgi in [(FastAPI(), True), (RecordingApp(), True), (flask_app, False), (wsgi_echo, False)]:
        assert is_asgi_app(app) is asgi, app
    with app_client(wsgi_echo, client_address=("1.2.3.4", 1), lifespan=False) as client:
        assert eval(client.get("/").text)["addr"] == "127.0.0.1"
    with app_client(RecordingApp(), client_address=("1.2.3.4", 1)) as client:
        assert eval(client.get("/").text)["client"] == ("1.2.3.4", 1)


def test_site_origin() -> None:
    assert site_origin("https://a.example:8443/some/path?q=1") == "https://a.example:8443"
    with pytest.raises(ValueError):
        site_origin("/relative")

"""The WSGI adapter's own duties, driven with raw environs: what it reads, what it hands on, what it renders."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from harness import PASSWORD, SECRET, SITE
from werkzeug.test import EnvironBuilder

from banata_middleware import BanataAuth, BanataAuthConfig, Identity, PasswordHashing
from banata_middleware.adapters.werkzeug import BanataMiddleware, fresh_second_factor_refusal
from banata_middleware.http import Request
from banata_middleware.simulator.clocks import FrozenClock

CAP = 64 * 1024


class Untouchable(io.RawIOBase):
    """A wsgi.input the middleware must not read."""

    def read(self, size: int | None = -1) -> bytes:
        raise AssertionError("the middleware read a body it should not read")


class Counting(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.served = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.served += len(chunk)
        return chunk


class Inner:
    """The wrapped app: records the environ it was called with."""

    def __init__(self) -> None:
        self.environ: dict[str, Any] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.environ = environ
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"inner"]


def make(clock: FrozenClock, **options: Any) -> tuple[BanataMiddleware, Inner, list[Request]]:
    options.setdefault("public_paths", ("/", "/caf\u00e9"))
    auth = BanataAuth(BanataAuthConfig(app_name="T", site_url=SITE, secret=SECRET, clock=clock,
                                       password_hashing=PasswordHashing(n=2**8), **options))
    seen: list[Request] = []
    handle = auth.handle

    def spy(request: Request) -> Any:
        seen.append(request)
        return handle(request)

    auth.handle = spy  # type: ignore[method-assign]
    inner = Inner()
    return BanataMiddleware(inner, auth), inner, seen


def call(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    started: list[Any] = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: started.extend([status, headers])))
    return started[0], started[1], body


def environ(path: str, method: str = "GET", **kw: Any) -> dict[str, Any]:
    kw.setdefault("headers", {"origin": SITE})
    return EnvironBuilder(path=path, method=method, base_url=SITE, **kw).get_environ()


def test_too_large_content_length_is_413_without_reading_the_body(clock: FrozenClock) -> None:
    app, _, _ = make(clock)
    env = environ("/api/auth/sign-in/email", "POST")
    env.update({"CONTENT_LENGTH": str(10**9), "CONTENT_TYPE": "application/json", "wsgi.input": Untouchable()})
    status, _, body = call(app, env)
    assert status.startswith("413") and json.loads(body)["code"] == "PAYLOAD_TOO_LARGE"


def test_streamed_body_over_the_cap_is_413_and_read_no_further_than_the_cap(clock: FrozenClock) -> None:
    app, _, _ = make(clock)
    stream = Counting(b"x" * (CAP * 4))
    env = environ("/api/auth/sign-in/email", "POST")
    env.pop("CONTENT_LENGTH", None)
    env.update({"wsgi.input": stream, "wsgi.input_terminated": True, "CONTENT_TYPE": "application/json"})
    status, _, body = call(app, env)
    assert status.startswith("413") and json.loads(body)["code"] == "PAYLOAD_TOO_LARGE"
    assert stream.served == CAP + 1


def test_streamed_body_within_the_cap_is_read(clock: FrozenClock) -> None:
    app, _, _ = make(clock)
    payload = json.dumps({"email": "chunked@example.com", "password": PASSWORD}).encode()
    env = environ("/api/auth/sign-up/email", "POST")
    env.pop("CONTENT_LENGTH", None)
    env.update({"wsgi.input": io.BytesIO(payload), "wsgi.input_terminated": True, "CONTENT_TYPE": "application/json"})
    status, _, body = call(app, env)
    assert status.startswith("200") and json.loads(body)["user"]["email"] == "chunked@example.com"


def test_body_of_exactly_the_cap_is_not_too_large(clock: FrozenClock) -> None:
    app, _, seen = make(clock)
    env = environ("/api/auth/sign-in/email", "POST", data=b" " * CAP, content_type="application/json")
    call(app, env)
    assert seen[0].body == b" " * CAP and not seen[0].body_too_large


def test_body_without_length_or_stream_termination_is_not_read(clock: FrozenClock) -> None:
    app, _, seen = make(clock)
    env = environ("/api/auth/sign-in/email", "POST")
    env.pop("CONTENT_LENGTH", None)
    env["wsgi.input"] = Untouchable()
    status, _, body = call(app, env)
    assert status.startswith("400") and json.loads(body)["code"] == "VALIDATION_ERROR"
    assert seen[0].body == b""


def test_pass_through_bodies_are_never_read(clock: FrozenClock) -> None:
    app, _, seen = make(clock)
    for path, expected in (("/", "200"), ("/protected", "401")):
        env = environ(path, "POST")
        env.update({"CONTENT_LENGTH": "5", "wsgi.input": Untouchable()})
        status, _, _ = call(app, env)
        assert status.startswith(expected), path
    assert [r.body for r in seen] == [None, None]


def test_query_is_parsed_for_auth_endpoints_only(clock: FrozenClock) -> None:
    app, _, seen = make(clock)
    call(app, environ("/api/auth/get-session", query_string="name=my%20key&x=1"))
    call(app, environ("/", query_string="name=x"))
    assert dict(seen[0].query) == {"name": "my key", "x": "1"} and dict(seen[1].query) == {}


def test_headers_reach_the_flows_with_lower_case_names(clock: FrozenClock) -> None:
    app, _, seen = make(clock)
    call(app, environ("/api/auth/sign-in/email", "POST", data=b"{}", content_type="application/json",
                      headers={"Origin": SITE, "X-Forwarded-For": "203.0.113.9", "User-Agent": "probe/1"},
                      environ_overrides={"REMOTE_ADDR": "198.51.100.7"}))
    headers = seen[0].headers
    assert headers.get("x-forwarded-for") == "203.0.113.9" and headers["user-agent"] == "probe/1"
    assert headers.get("content-type") == "application/json" and headers.get("content-length") == "2"
    assert headers.get("authorization") is None and headers.get("authorization", "") == ""
    assert {"origin", "user-agent", "x-forwarded-for", "content-type", "content-length", "host"} <= set(headers)
    assert seen[0].client == "198.51.100.7"  # X-Forwarded-For is ignored: no trusted proxies


def test_every_set_cookie_header_survives(clock: FrozenClock) -> None:
    app, _, _ = make(clock)
    status, headers, body = call(app, environ("/api/auth/sign-out", "POST"))
    assert status == "200 OK" and json.loads(body) == {"success": True}
    cookies = [v for k, v in headers if k.lower() == "set-cookie"]
    assert len(cookies) == 2
    assert {c.split("=")[0] for c in cookies} == {"banata.session_token", "banata.two_factor"}
    assert ("Content-Length", str(len(body))) in headers


def test_head_request_gets_headers_without_a_body(clock: FrozenClock) -> None:
    app, _, _ = make(clock)
    status, headers, body = call(app, environ("/protected", "HEAD"))
    assert int(dict(headers)["Content-Length"]) > 0  # what a GET would get, as HTTP wants for HEAD
    assert status.startswith("401") and body == b""


def test_identity_and_auth_are_handed_to_the_wrapped_app(clock: FrozenClock) -> None:
    app, inner, _ = make(clock)
    payload = json.dumps({"email": "id@example.com", "password": PASSWORD}).encode()
    _, _, body = call(app, environ("/api/auth/sign-up/email", "POST", data=payload,
                                         content_type="application/json"))
    token = json.loads(body)["token"]
    status, _, body = call(app, environ("/protected", headers={"Authorization": f"Bearer {token}"}))
    assert (status, body) == ("200 OK", b"inner")
    assert inner.environ is not None
    identity = inner.environ["banata"]
    assert isinstance(identity, Identity) and identity.user_id == token.split(".")[0] and identity.aal == 1
    assert inner.environ["banata.auth"] is app.auth

    call(app, environ("/"))
    assert "banata" not in inner.environ and inner.environ["banata.auth"] is app.auth


def test_paths_include_the_script_name(clock: FrozenClock) -> None:
    app, _, _ = make(clock, base_path="/app/api/auth")
    env = environ("/api/auth/get-session")
    env["SCRIPT_NAME"] = "/app"
    status, _, body = call(app, env)
    assert status == "200 OK" and json.loads(body) is None


def test_non_ascii_paths_are_decoded_as_utf8_like_asgi(clock: FrozenClock) -> None:
    app, _, seen = make(clock)
    env = environ("/")
    env["PATH_INFO"] = "/caf\u00e9".encode().decode("latin-1")  # PEP 3333: bytes as latin-1
    status, _, body = call(app, env)
    assert (status, body) == ("200 OK", b"inner") and seen[0].path == "/caf\u00e9"


def test_fresh_second_factor_refusal_needs_the_middleware() -> None:
    with pytest.raises(RuntimeError, match="BanataMiddleware"):
        fresh_second_factor_refusal({}, 300)

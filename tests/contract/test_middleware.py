"""What the middleware does to every request that is not an auth endpoint, and hostile input."""

from __future__ import annotations

import json

import pytest
from harness import PASSWORD, SITE, Stack


def test_public_path_passes_through_without_a_session(stack: Stack) -> None:
    r = stack.client().get("/")
    assert r.status_code == 200 and "banata-mfa demo" in r.text


def test_protected_path_without_a_session_is_401(stack: Stack) -> None:
    r = stack.client().get("/api/me")
    assert r.status_code == 401 and r.json() == {"code": "UNAUTHORIZED", "message": "sign in first"}


def test_html_navigation_without_a_session_is_sent_to_the_sign_in_page(stack: Stack) -> None:
    r = stack.client().get("/dashboard", headers={"accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 303 and r.headers["location"] == "/sign-in"


def test_without_a_sign_in_page_html_navigation_gets_401(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(sign_in_page=None)
    assert stack.client().get("/dashboard", headers={"accept": "text/html"}).status_code == 401


def test_pending_second_factor_is_refused_everywhere_protected(stack: Stack) -> None:
    owner = stack.client()
    owner.sign_up("p@example.com")
    owner.enable_2fa()
    api = stack.client()
    assert api.sign_in("p@example.com").status_code == 403
    for method, path in (("GET", "/api/me"), ("GET", "/dashboard"), ("POST", "/api/sensitive")):
        r = api.http.request(method, path)
        assert r.status_code == 403 and r.json() == {"code": "TWO_FACTOR_REQUIRED",
                                                     "message": "two-factor authentication required"}


def test_identity_reaches_the_wrapped_app(stack: Stack) -> None:
    api = stack.client()
    uid = api.sign_up("i@example.com").json()["user"]["id"]
    assert api.get("/api/me").json() == {"userId": uid, "aal": 1}
    assert uid in api.get("/dashboard").text


def test_fresh_path_needs_a_recent_second_factor(stack: Stack) -> None:
    api = stack.client()
    api.sign_up("fresh@example.com")
    r = api.post("/api/sensitive")
    assert (r.status_code, r.json()["code"]) == (403, "FRESH_TWO_FACTOR_REQUIRED")
    api.enable_2fa()
    assert api.post("/api/sensitive").json() == {"ok": True}
    stack.clock.advance(301)
    assert api.post("/api/sensitive").json()["code"] == "FRESH_TWO_FACTOR_REQUIRED"


def test_require_two_factor_refuses_sessions_without_2fa(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(require_two_factor=True)
    api = stack.client()
    api.sign_up("enrol@example.com")
    r = api.get("/api/me")
    assert (r.status_code, r.json()["code"]) == (403, "TWO_FACTOR_ENROLLMENT_REQUIRED")
    api.enable_2fa()  # the auth endpoints stay reachable
    assert api.get("/api/me").status_code == 200


def test_state_changing_request_with_a_cookie_from_another_origin_is_refused(stack: Stack) -> None:
    api = stack.client()
    api.sign_up("o@example.com")
    for headers in ({"origin": "https://evil.example"}, {"origin": "null"}, {"origin": ""}):
        r = api.post("/api/sensitive", headers=headers)
        assert (r.status_code, r.json()["code"]) == (403, "INVALID_ORIGIN"), headers
        r = api.auth("/two-factor/enable", {"password": PASSWORD}, headers=headers)
        assert (r.status_code, r.json()["code"]) == (403, "INVALID_ORIGIN"), headers


def test_referer_is_used_when_origin_is_absent(stack: Stack) -> None:
    api = stack.client(origin=None)
    api.sign_up("ref@example.com")
    r = api.auth("/two-factor/enable", {"password": PASSWORD}, headers={"referer": SITE + "/settings"})
    assert r.status_code == 200
    r = api.auth("/two-factor/enable", {"password": PASSWORD}, headers={"referer": "https://evil.example/x"})
    assert r.json()["code"] == "INVALID_ORIGIN"
    r = api.auth("/two-factor/enable", {"password": PASSWORD})
    assert r.json()["code"] == "INVALID_ORIGIN"


def test_trusted_origins_are_accepted(stack_factory) -> None:  # type: ignore[no-untyped-def]
    stack = stack_factory(trusted_origins=("https://admin.example",))
    api = stack.client(origin="https://admin.example")
    api.sign_up("t@example.com")
    assert api.auth("/two-factor/enable", {"password": PASSWORD}).status_code == 200


def test_oversized_body_is_413_before_anything_else(stack: Stack) -> None:
    api = stack.client(origin="https://evil.example")
    big = {"email": "a@b.co", "password": "x" * (65 * 1024)}
    for path in ("/sign-in/email", "/two-factor/verify-totp", "/two-factor/enable"):
        r = api.auth(path, big)
        assert (r.status_code, r.json()["code"]) == (413, "PAYLOAD_TOO_LARGE"), path


def test_a_get_endpoints_body_is_not_read(stack: Stack) -> None:
    # get-session is polled: its body (none is defined for a GET) is neither read nor capped.
    api = stack.client()
    uid = api.sign_up("g@example.com").json()["user"]["id"]
    r = api.http.request("GET", "/api/auth/get-session", content=b"x" * (65 * 1024))
    assert r.status_code == 200 and r.json()["user"]["id"] == uid


def test_pass_through_bodies_are_not_capped(stack: Stack) -> None:
    api = stack.client()
    api.sign_up("big@example.com")
    api.enable_2fa()
    r = api.post("/api/sensitive", content=b"x" * (200 * 1024), headers={"content-type": "application/octet-stream"})
    assert r.json() == {"ok": True}


@pytest.mark.parametrize("content,ctype,status", [
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b'"text"', "application/json", 400),
    (b"email=a@b.co", "application/x-www-form-urlencoded", 415),
    (b"\xff\xfe\x00garbage", "application/json", 400),
    (b"[" * 100_00 + b"]" * 100_00, "application/json", 400),
])
def test_bodies_that_are_not_a_json_object_are_refused(stack: Stack, content: bytes, ctype: str, status: int) -> None:
    r = stack.client().http.post("/api/auth/sign-in/email", content=content, headers={"content-type": ctype})
    assert r.status_code == status and r.json()["code"] == "VALIDATION_ERROR" and r.json()["message"]


def test_unknown_endpoint_and_wrong_method(stack: Stack) -> None:
    api = stack.client()
    assert api.get("/api/auth/nothing-here").status_code == 404
    r = api.get("/api/auth/sign-in/email")
    assert (r.status_code, r.json()["code"]) == (405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize("cookie", ["garbage", "a.b.c", "", "x" * 600, "user.id.sig\x7f", "{u:1}.x.y"])
def test_forged_or_malformed_cookies_are_treated_as_absent(stack: Stack, cookie: str) -> None:
    api = stack.client()
    api.http.cookies.set("banata.session_token", cookie)
    api.http.cookies.set("banata.two_factor", cookie)
    assert api.get("/api/me").status_code == 401
    assert api.get("/api/auth/get-session").json() is None
    r = api.auth("/two-factor/verify-totp", {"code": "123456"})
    assert r.json()["code"] == "UNAUTHORIZED"


def test_a_session_cookie_cannot_be_used_as_a_challenge_cookie(stack: Stack) -> None:
    api = stack.client()
    token = api.sign_up("swap@example.com").json()["token"]
    api.enable_2fa()
    thief = stack.client()
    thief.http.cookies.set("banata.two_factor", token)
    assert thief.get("/api/me").status_code == 401


def test_duplicate_json_keys_and_extra_fields_do_not_break_the_endpoint(stack: Stack) -> None:
    stack.client().sign_up("dupkey@example.com")
    body = b'{"email": "x@example.com", "email": "dupkey@example.com", "password": "%s", "extra": [1]}' % (
        PASSWORD.encode())
    r = stack.client().http.post("/api/auth/sign-in/email", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert json.loads(r.text)["user"]["email"] == "dupkey@example.com"


@pytest.mark.parametrize("path", ["/static/../api/me", "//api/me", "/./api/me", "/static/./../dashboard",
                                  "/static\\..\\api/me", "/sign-in/../api/sensitive", "/api/auth/../sign-in"])
def test_dot_segments_are_refused_before_any_policy_decision(stack: Stack, path: str) -> None:
    """Frameworks route '..' literally (into path parameters), so no resolved form is the routed
    one: the path is refused, whether it reads as public, protected or an auth endpoint."""
    from banata_middleware.http import Request, Response

    result = stack.auth.handle(Request("GET", path, {}, "127.0.0.1"))
    assert isinstance(result, Response) and result.status == 400, path
    assert json.loads(result.body)["code"] == "INVALID_PATH"


def test_html_navigation_of_a_pending_user_goes_to_the_two_factor_page(stack: Stack) -> None:
    owner = stack.client()
    owner.sign_up("nav@example.com")
    owner.enable_2fa()
    api = stack.client()
    api.sign_in("nav@example.com")
    r = api.get("/dashboard", headers={"accept": "text/html"})
    assert r.status_code == 303 and r.headers["location"] == "/two-factor"
    assert api.get("/api/me").json()["code"] == "TWO_FACTOR_REQUIRED"  # JSON callers still get the 403

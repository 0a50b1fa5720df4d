"""The OpenAPI document: made from the route table (no route undocumented, no entry without a route),
valid OpenAPI 3.1, naming the cookies the flows set, listing every error code the endpoints raise;
served at {base_path}/openapi.json only when asked; printed by ``banata-mfa openapi``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from harness import SECRET, SITE, Stack
from openapi_spec_validator import validate

from banata_middleware import AuthMethods, BanataAuth, OtpConfig, PasskeyConfig, Policies
from banata_middleware.cli import main
from banata_middleware.config import BanataAuthConfig
from banata_middleware.openapi import ENDPOINTS, openapi_document
from banata_middleware.otp import Inbox

PACKAGE = Path(__file__).resolve().parents[2] / "banata_middleware"
ALL_ON = AuthMethods(email_password=True, two_factor=True, passkey=True)


def _auth(site_url: str = SITE, **overrides: Any) -> BanataAuth:
    overrides.setdefault("auth_methods", ALL_ON)
    overrides.setdefault("otp", OtpConfig(sender=Inbox(), channels=("email", "sms")))
    return BanataAuth(BanataAuthConfig(app_name="T", site_url=site_url, secret=SECRET, **overrides))


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


def test_every_route_has_an_entry_and_every_entry_a_route() -> None:
    gateway = _auth(serve_openapi=True).gateway
    assert set(gateway.routes) == set(ENDPOINTS), "document a new route in openapi.ENDPOINTS (or drop a stale entry)"
    doc = openapi_document(gateway)
    assert _operations(doc) == {(m, "/api/auth" + p) for m, p in gateway.routes}


def test_a_route_without_an_entry_fails_loudly() -> None:
    gateway = _auth().gateway
    gateway.routes[("POST", "/two-factor/new-thing")] = gateway.routes[("POST", "/sign-out")]
    with pytest.raises(KeyError):
        openapi_document(gateway)


def test_the_document_lists_only_what_the_configuration_serves() -> None:
    gateway = _auth(auth_methods=AuthMethods(email_password=False, two_factor=True, passkey=False),
                    base_path="/auth").gateway
    paths = set(openapi_document(gateway)["paths"])
    assert "/auth/two-factor/enable" in paths and "/auth/get-session" in paths
    assert not any("sign-up" in p or "passkey" in p or "openapi.json" in p for p in paths)


def test_without_codes_by_message_enable_is_totp_only() -> None:
    doc = openapi_document(_auth(otp=None).gateway)
    assert not any(p.endswith("-otp") for p in doc["paths"])
    enable = doc["paths"]["/api/auth/two-factor/enable"]["post"]
    body = enable["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["method"] == {"const": "totp"} and "to" not in body["properties"]
    assert "OTP_DELIVERY_FAILED" not in json.dumps(enable["responses"])
    validate(doc)


def test_links_lead_only_to_served_operations_and_limits_follow_the_policies() -> None:
    doc = openapi_document(_auth(auth_methods=AuthMethods(email_password=True, two_factor=False),
                                 policies=Policies(password_min_length=12)).gateway)
    sign_up = doc["paths"]["/api/auth/sign-up/email"]["post"]
    assert set(sign_up["responses"]["200"]["links"]) == {"getSession", "signIn"}  # no enable without 2FA
    body = sign_up["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["password"]["minLength"] == 12
    # the table itself is untouched (each document gets its own copy)
    assert openapi_document(_auth().gateway)["paths"]["/api/auth/sign-up/email"]["post"]["requestBody"][
        "content"]["application/json"]["schema"]["properties"]["password"]["minLength"] == 8


@pytest.mark.parametrize("site_url", ["http://localhost:3000", "https://app.example"])
@pytest.mark.parametrize("challenge_status", [403, 200])
def test_the_document_is_valid_openapi_3_1(site_url: str, challenge_status: int) -> None:
    doc = openapi_document(_auth(site_url, challenge_status=challenge_status,
                                 passkey=PasskeyConfig(origins=(site_url,))).gateway)
    validate(doc)  # raises on an invalid document
    assert doc["openapi"].startswith("3.1")
    sign_in = doc["paths"]["/api/auth/sign-in/email"]["post"]["responses"]
    # The sign-in challenge is a 403 answer, or (better-auth's form) a 200 one.
    assert ("TWO_FACTOR_REQUIRED" in json.dumps(sign_in["403"])) is (challenge_status == 403)
    assert ("TWO_FACTOR_REQUIRED" in json.dumps(sign_in["200"])) is (challenge_status == 200)


@pytest.mark.parametrize("site_url", ["http://localhost:3000", "https://app.example"])
def test_cookie_names_are_the_ones_the_flows_set(site_url: str) -> None:
    auth = _auth(site_url, passkey=PasskeyConfig(origins=(site_url,)))
    text = json.dumps(openapi_document(auth.gateway))
    named = set(re.findall(r"(?:__Host-)?banata\.[a-z_]+", text))
    assert named == set(auth.flows.cookie_names)
    assert all(n.startswith("__Host-") for n in named) is site_url.startswith("https")
    schemes = openapi_document(auth.gateway)["components"]["securitySchemes"]
    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    assert schemes["sessionCookie"]["name"] == auth.flows.session_cookie


# Answered outside the documented operations: to paths that may route as another (400), to unknown
# endpoints and methods (404, 405), and by the guard of the app's own paths.
NOT_ENDPOINT_ANSWERS = {
    (400, "INVALID_PATH"), (404, "NOT_FOUND"), (405, "METHOD_NOT_ALLOWED"), (303, "SIGN_IN_REQUIRED"),
    (303, "TWO_FACTOR_REQUIRED"), (403, "TWO_FACTOR_ENROLLMENT_REQUIRED"), (403, "PHISHING_RESISTANT_FACTOR_REQUIRED"),
}


def test_every_error_the_code_raises_is_in_the_document() -> None:
    """A new ``AuthError(status, "CODE", ...)`` anywhere in the package must be documented."""
    raised = set()
    for source in PACKAGE.rglob("*.py"):
        for status, code in re.findall(r'AuthError\(\s*(\d{3}),\s*"([A-Z_]+)"', source.read_text()):
            raised.add((int(status), code))
    assert len(raised) > 20  # the pattern still finds them
    doc = openapi_document(_auth(serve_openapi=True).gateway)
    documented = set()
    for item in doc["paths"].values():
        for op in item.values():
            for status, response in op["responses"].items():
                for code in re.findall(r'"(?:const|enum)": "([A-Z_]+)"', json.dumps(response)):
                    documented.add((int(status), code))
    assert raised - NOT_ENDPOINT_ANSWERS <= documented, sorted(raised - NOT_ENDPOINT_ANSWERS - documented)


def test_openapi_json_is_served_only_when_asked(stack_factory: Callable[..., Stack]) -> None:
    off = stack_factory().client()
    assert off.get("/api/auth/openapi.json").status_code == 404
    stack = stack_factory(serve_openapi=True)
    r = stack.client().get("/api/auth/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == json.loads(json.dumps(openapi_document(stack.auth.gateway)))


def test_a_405_lists_the_allowed_methods(stack: Stack) -> None:
    """RFC 9110 15.5.6 (found by schemathesis: a 405 without Allow)."""
    client = stack.client()
    r = client.http.request("TRACE", "/api/auth/get-session")
    assert r.status_code == 405 and r.json()["code"] == "METHOD_NOT_ALLOWED"
    assert r.headers["allow"] == "GET"
    r = client.http.delete("/api/auth/two-factor/enable")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


def test_the_cli_prints_the_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["openapi"]) == 0
    doc = json.loads(capsys.readouterr().out)
    validate(doc)
    assert ("POST", "/api/auth/passkey/verify-authentication") in _operations(doc)
    assert main(["openapi", "--base-path", "/auth", "--without", "passkey", "--site-url", "https://a.example"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert "/auth/two-factor/enable" in doc["paths"] and not any("passkey" in p for p in doc["paths"])
    assert doc["components"]["securitySchemes"]["sessionCookie"]["name"] == "__Host-banata.session_token"

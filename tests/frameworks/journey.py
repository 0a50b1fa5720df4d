"""The journey every framework test walks: sign-up, enable 2FA, sign-out, sign-in with a second
factor due, the protected view refuses the pending user, verify-totp, the view sees the identity.

Driven through an ``httpx.Client`` (FastAPI's TestClient is one) against the real framework app
wrapped by the middleware. Codes come from the simulator's virtual authenticator, never by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from harness import PASSWORD, SITE

from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.clocks import FrozenClock

ORIGIN = {"origin": SITE}
SESSION_COOKIE = "banata.session_token"
PENDING_COOKIE = "banata.two_factor"


@dataclass
class Journey:
    user_id: str
    device: VirtualAuthenticator


def post(client: httpx.Client, path: str, json: Any = None) -> httpx.Response:
    return client.post(path, json=json, headers=ORIGIN)


def two_factor_sign_in(client: httpx.Client, clock: FrozenClock, *, protected: str,
                       email: str = "ada@example.com") -> Journey:
    """Walk the journey; ``protected`` is a GET view answering ``{"userId", "aal"}`` from the identity."""
    r = post(client, "/api/auth/sign-up/email", {"email": email, "password": PASSWORD, "name": "Ada"})
    assert r.status_code == 200, r.text
    user_id = r.json()["user"]["id"]
    assert client.get(protected).json() == {"userId": user_id, "aal": 1}

    r = post(client, "/api/auth/two-factor/enable", {"password": PASSWORD})
    assert r.status_code == 200, r.text
    device = VirtualAuthenticator.from_uri(r.json()["totpURI"], clock=clock)
    r = post(client, "/api/auth/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200 and r.json()["user"]["twoFactorEnabled"] is True, r.text

    r = post(client, "/api/auth/sign-out")
    assert r.status_code == 200 and r.json() == {"success": True}
    assert SESSION_COOKIE not in client.cookies
    assert client.get(protected).status_code == 401

    r = post(client, "/api/auth/sign-in/email", {"email": email, "password": PASSWORD})
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "TWO_FACTOR_REQUIRED" and r.json()["twoFactorRedirect"] is True
    assert PENDING_COOKIE in client.cookies and SESSION_COOKIE not in client.cookies

    r = client.get(protected)
    assert r.status_code == 403
    assert r.json() == {"code": "TWO_FACTOR_REQUIRED", "message": "two-factor authentication required"}

    clock.advance(device.period)  # the step accepted at enrolment is spent: use the next one
    r = post(client, "/api/auth/two-factor/verify-totp", {"code": device.code()})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == user_id
    assert SESSION_COOKIE in client.cookies and PENDING_COOKIE not in client.cookies

    r = client.get(protected)
    assert r.status_code == 200 and r.json() == {"userId": user_id, "aal": 2}
    return Journey(user_id, device)

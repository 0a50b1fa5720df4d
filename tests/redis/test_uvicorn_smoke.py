"""Smoke test: the product docs' two flows end to end through a real uvicorn server on a RedisStore.

Setup: sign up, ``twoFactor.enable({password})`` gives ``totpURI`` and ``backupCodes``, the user scans
the QR code (the virtual authenticator reads the URI) and ``verifyTotp({code})`` turns 2FA on.
Sign-in: ``signIn.email`` answers 403 with a message containing "two-factor" (what the docs' client
checks), ``verifyTotp({code})`` gives the session; a backup code works once in place of the code.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis_support import PASSWORD, T0, Browser, build_app
from servers import serve

from banata_middleware.simulator import VirtualAuthenticator
from banata_middleware.simulator.clocks import FrozenClock

pytestmark = pytest.mark.redis


def test_setup_and_sign_in_flows_of_the_product_docs_work_through_uvicorn_on_redis(redis_url: str, database_url: str,
                                                                                   redis_server: Any) -> None:
    clock = FrozenClock(T0)
    _, store, app = build_app("asgi", redis_url=redis_url, database_url=database_url, clock=clock)
    email = "docs-flow@example.com"
    with serve(app, "asgi") as base_url:
        browser, phone = Browser.at(base_url, clock), Browser.at(base_url, clock)
        try:
            # -- setup ------------------------------------------------------------------
            user = browser.sign_up(email).json()["user"]
            assert user["twoFactorEnabled"] is False
            r = browser.auth("/two-factor/enable", {"password": PASSWORD})
            assert r.status_code == 200, r.text
            uri, backup_codes = r.json()["totpURI"], r.json()["backupCodes"]
            assert uri.startswith("otpauth://totp/") and len(backup_codes) == 10
            device = VirtualAuthenticator.from_uri(uri, clock=clock)
            r = browser.verify_totp(device.code())
            assert r.status_code == 200 and r.json()["user"]["twoFactorEnabled"] is True, r.text
            assert browser.auth("/sign-out").json() == {"success": True}
            assert browser.get("/api/me").status_code == 401

            # -- sign-in with the authenticator app -------------------------------------------
            r = browser.sign_in(email)
            assert r.status_code == 403 and "two-factor" in r.json()["message"], r.text
            assert r.json()["twoFactorRedirect"] is True and "totp" in r.json()["twoFactorMethods"]
            assert browser.get("/api/me").json()["code"] == "TWO_FACTOR_REQUIRED"
            clock.advance(30)
            r = browser.verify_totp(device.code())
            assert r.status_code == 200, r.text
            token = r.json()["token"]
            assert r.json()["user"]["id"] == user["id"]
            assert browser.get("/api/me").json() == {"userId": user["id"], "aal": 2}
            session = browser.get("/api/auth/get-session").json()["session"]
            assert session["aal"] == 2 and session["mfaVerifiedAt"]
            # a client without cookies sends the token as a bearer token
            anonymous = Browser.at(base_url, clock)
            me = anonymous.get("/api/me", headers={"authorization": f"Bearer {token}"})
            anonymous.close()
            assert me.status_code == 200 and me.json()["aal"] == 2

            # -- sign-in with a backup code, which then is spent --------------------------------
            assert phone.sign_in(email).status_code == 403
            r = phone.verify_backup(backup_codes[0])
            assert r.status_code == 200 and r.json()["backupCodesRemaining"] == 9, r.text
            assert phone.get("/api/me").json()["aal"] == 2
            assert phone.auth("/sign-out").status_code == 200
            assert phone.sign_in(email).status_code == 403
            r = phone.verify_backup(backup_codes[0])
            assert r.status_code == 401 and r.json()["code"] == "INVALID_CODE", r.text
        finally:
            browser.close()
            phone.close()
    store.close()

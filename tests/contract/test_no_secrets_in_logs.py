"""Nothing secret reaches the logs or the audit events: every flow runs with every logger at DEBUG."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from harness import PASSWORD, Stack


def test_logs_and_audit_events_hold_no_code_secret_password_or_token(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[dict[str, Any]] = []
    stack.auth.audit.subscribe(events.append)
    caplog.set_level(logging.DEBUG)
    api = stack.client()
    api.sign_up("logs@example.com")
    device = api.enable_2fa()
    stack.clock.advance(30)
    other = stack.client()
    other.sign_in("logs@example.com")
    other.auth("/two-factor/verify-totp", {"code": "000000"})
    other.auth("/two-factor/verify-totp", {"code": device.code(), "trustDevice": True})
    other.auth("/sign-out")
    third = stack.client()
    third.sign_in("logs@example.com")
    third.auth("/two-factor/verify-backup-code", {"code": api.backup_codes[0]})
    api.auth("/two-factor/generate-backup-codes", {"password": PASSWORD})
    api.auth("/two-factor/disable", {"password": "wrong password"})
    secrets = [device.account().secret, PASSWORD, "wrong password", *api.backup_codes, device.code(),
               *(c.value for client in (api, other, third) for c in client.http.cookies.jar)]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert any("two_factor.failed" in r.getMessage() for r in caplog.records)  # the logs were captured
    for secret in secrets:
        assert secret and secret not in logged
        assert secret not in str(events)

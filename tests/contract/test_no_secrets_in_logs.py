"""Nothing secret reaches the logs or the audit events: every flow runs with every logger at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from harness import PASSWORD, Stack

from banata_middleware import OtpConfig
from banata_middleware.otp import Inbox, OtpMessage


class Sender:
    """Codes by message to an inbox; the step-up ones fail, naming the code (as a provider's error might)."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        self.failed: list[str] = []

    def __call__(self, message: OtpMessage) -> None:
        self.inbox(message)
        if message.purpose == "step_up":
            self.failed.append(message.code)
            raise RuntimeError(f"could not deliver {message.code} to {message.to}: {message!r} {message.text()}")


def test_logs_and_audit_events_hold_no_code_secret_password_or_token(
    stack_factory: Callable[..., Stack], caplog: pytest.LogCaptureFixture
) -> None:
    sender = Sender()
    stack = stack_factory(otp=OtpConfig(sender=sender, digits=8))
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
    # codes by message: enrolment (a wrong code first), a sign-in, a step-up whose sender fails
    assert api.auth("/two-factor/enable", {"password": PASSWORD, "method": "otp"}).status_code == 200
    api.auth("/two-factor/verify-otp", {"code": "87654321"})
    assert api.auth("/two-factor/verify-otp", {"code": sender.inbox.latest().code}).status_code == 200
    fourth = stack.client()
    fourth.sign_in("logs@example.com")
    assert fourth.auth("/two-factor/send-otp", {}).status_code == 200
    fourth.auth("/two-factor/verify-otp", {"code": "12345678", "trustDevice": True})
    assert fourth.auth("/two-factor/verify-otp", {"code": sender.inbox.latest().code}).status_code == 200
    assert fourth.auth("/two-factor/send-otp", {}).status_code == 503
    api.auth("/two-factor/disable", {"password": "wrong password"})
    secrets = [device.account().secret, PASSWORD, "wrong password", *api.backup_codes, device.code(),
               *(m.code for m in sender.inbox.messages), "87654321", "12345678",
               *(c.value for client in (api, other, third, fourth) for c in client.http.cookies.jar)]
    assert sender.failed and len(sender.inbox.messages) == 3
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert any("two_factor.failed" in r.getMessage() for r in caplog.records)  # the logs were captured
    assert any("one-time code sender raised RuntimeError" in r.getMessage() for r in caplog.records)
    for secret in secrets:
        assert secret and secret not in logged
        assert secret not in str(events)

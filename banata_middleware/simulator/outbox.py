"""The process-wide notice outbox of the ``mfa_outbox`` fixture and code inbox of the ``mfa_inbox``
fixture, for apps built once at import: ``BanataAuth(config, notifier=shared_outbox())`` and
``OtpConfig(sender=shared_inbox())`` (the fixtures empty them before each test)."""

from __future__ import annotations

from ..delivery.notices import Outbox
from ..otp import Inbox

__all__ = ["shared_inbox", "shared_outbox"]

_OUTBOX = Outbox()
_INBOX = Inbox()


def shared_outbox() -> Outbox:
    return _OUTBOX


def shared_inbox() -> Inbox:
    return _INBOX

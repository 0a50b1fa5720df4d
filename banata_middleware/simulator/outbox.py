"""The process-wide notice outbox of the ``mfa_outbox`` fixture, for apps built once at import:
``BanataAuth(config, notifier=shared_outbox())`` (the fixture empties it before each test)."""

from __future__ import annotations

from ..delivery.notices import Outbox

__all__ = ["shared_outbox"]

_OUTBOX = Outbox()


def shared_outbox() -> Outbox:
    return _OUTBOX

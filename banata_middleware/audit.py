"""Audit events: ``{type, userId, at, ip, userAgent, sessionId?, detail?}``; never a code or secret.

The store writes each event to the user's Redis Stream inside the same script that changed the
state (so an event exists exactly when its change does) and reports which events it wrote; this
module hands them to the in-process sinks: Python callbacks and the ``logging`` module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

__all__ = ["AuditEvent", "AuditLog"]

AuditEvent = dict[str, Any]

log = logging.getLogger("banata_middleware.audit")


class AuditLog:
    def __init__(self, callbacks: Iterable[Callable[[AuditEvent], None]] = (), *, use_logging: bool = True) -> None:
        self.callbacks = list(callbacks)
        self.use_logging = use_logging

    def subscribe(self, callback: Callable[[AuditEvent], None]) -> None:
        self.callbacks.append(callback)

    def emit(self, kinds: Iterable[str], *, user_id: str, at_ms: int, ip: str, user_agent: str,
             session_id: str = "") -> None:
        for kind in kinds:
            event: AuditEvent = {
                "type": kind,
                "userId": user_id,
                "at": datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(),
                "ip": ip,
                "userAgent": user_agent,
            }
            if session_id:
                event["sessionId"] = session_id
            if self.use_logging:
                log.info("%s user=%s ip=%s", kind, user_id, ip, extra={"audit": event})
            for callback in self.callbacks:
                try:
                    callback(event)
                except Exception:  # a broken sink must not turn a sign-in into a 500
                    log.exception("audit callback failed for %s", kind)

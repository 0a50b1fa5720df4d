"""Out-of-band notices to the user on factor changes (NIST SP 800-63B-4: binding a new authenticator
SHALL notify; OWASP: notify on MFA changes).

``BanataAuth(..., notifier=send)`` calls ``send(notice)`` (sync or async) after the change
committed, from the delivery thread: never on the request's path. A notice says who, what, when
and from where; never a code, a secret or a token. The app turns it into an email or a push.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .drainer import DeliveryFailed, OneCallAtATime

if TYPE_CHECKING:
    from ..stores.records import AuditRecord

__all__ = ["NOTICE_KINDS", "Notice", "NoticeConsumer", "Notifier", "Outbox"]

#: The audit event types that notify the user, and the notice kind each becomes. Some events have
#: two names (the hot store's scripts and the record operations name them differently); the kind
#: is what apps see.
NOTICE_KINDS: dict[str, str] = {
    "two_factor.enabled": "two_factor.enabled",
    "two_factor.disabled": "two_factor.disabled",
    "passkey.added": "passkey.added",
    "passkey.registered": "passkey.added",
    "passkey.removed": "passkey.removed",
    "passkey.deleted": "passkey.removed",
    "backup_codes.generated": "backup_codes.regenerated",
    "two_factor.backup_codes_regenerated": "backup_codes.regenerated",
    "backup_codes.low": "backup_codes.low",  # 2 or fewer left
    "trusted_device.added": "trusted_device.added",
    "two_factor.reset_by_admin": "two_factor.reset_by_admin",
    "two_factor.locked": "two_factor.locked",
    # Another authenticator app bound (NIST SP 800-63B-4 §4.6: binding SHALL notify), or one removed.
    "two_factor.authenticator_added": "authenticator.added",
    "two_factor.authenticator_removed": "authenticator.removed",
    # Codes by message turned on or off while two-factor stays on (a change of factor all the same;
    # turning them on or off as the only factor is two_factor.enabled / two_factor.disabled).
    "otp.enabled": "otp.enabled",
    "otp.disabled": "otp.disabled",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One notice. ``event_id`` is the audit event's id: delivery is at least once, so a notifier
    that must not send twice keeps the ids it sent."""

    event_id: int
    user_id: str
    kind: str
    at: datetime
    ip: str
    user_agent: str


Notifier = Callable[[Notice], None] | Callable[[Notice], Awaitable[None]]


def notice_of(event: AuditRecord) -> Notice:
    return Notice(event.id, event.user_id, NOTICE_KINDS[event.type], datetime.fromtimestamp(event.at / 1000, UTC),
                  event.ip, event.user_agent)


class NoticeConsumer:
    """The notifier as a delivery consumer. Each call runs in a thread of its own that the drainer
    waits for at most the timeout (a sync callable cannot be interrupted; an async one is
    cancelled): a hung notifier delays nothing but its own notices, and holds one thread while it
    hangs (``OneCallAtATime``: the attempts meanwhile fail without starting another call)."""

    name = "notifier"
    kinds: frozenset[str] | None = frozenset(NOTICE_KINDS)

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._calls = OneCallAtATime("banata-notifier")

    def deliver(self, event: AuditRecord, timeout: float) -> None:
        notice = notice_of(event)

        def call() -> None:
            result = self.notifier(notice)
            if inspect.isawaitable(result):
                asyncio.run(asyncio.wait_for(_awaited(result), timeout))

        try:
            self._calls.run(call, timeout)
        except TimeoutError:
            raise DeliveryFailed(f"notifier timed out after {timeout:g} s") from None
        except DeliveryFailed as exc:
            raise DeliveryFailed(f"notifier {exc}") from None
        except Exception as exc:  # by type only: the message may hold anything
            raise DeliveryFailed(f"notifier raised {type(exc).__name__}") from None


async def _awaited(result: Awaitable[None]) -> None:
    await result


class Outbox:
    """An in-memory notifier that keeps every notice (the demo's outbox page, the ``mfa_outbox``
    fixture): ``BanataAuth(..., notifier=outbox)``."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []
        self._changed = threading.Condition()

    def __call__(self, notice: Notice) -> None:
        with self._changed:
            self.notices.append(notice)
            self._changed.notify_all()

    def kinds(self, user_id: str | None = None) -> list[str]:
        return [n.kind for n in self.notices if user_id is None or n.user_id == user_id]

    def wait_for(self, kind: str, *, user_id: str | None = None, timeout: float = 5.0) -> Notice:
        """The first notice of ``kind`` (for ``user_id``), waiting up to ``timeout`` seconds of real
        time for the delivery thread to hand it over; ``AssertionError`` if none came."""

        def found() -> Notice | None:
            return next((n for n in self.notices if n.kind == kind and user_id in (None, n.user_id)), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None, timeout)
            notice = found()
        if notice is None:
            raise AssertionError(f"no {kind!r} notice{f' for {user_id}' if user_id else ''} in the outbox; "
                                 f"it has {self.kinds()}")
        return notice

    def clear(self) -> None:
        with self._changed:
            self.notices.clear()

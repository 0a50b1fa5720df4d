"""One-time codes sent by message (email or SMS): the factor itself. Codes, addresses, the message
the app's sender gets, and the in-memory sender of the simulator and the demo (``Inbox``).

A code is ``OtpConfig.digits`` decimal digits from ``secrets``. It is stored only as a keyed hash
(``crypto.Keyring.hash_otp``, bound to the user and to the challenge or session that asked for it),
in the hot store, for ``OtpConfig.ttl`` seconds; the flows are in ``flows/otp.py``, the durable
part (which address, enabled since when) in ``stores/records/factors/otp.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import secrets
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .config import OtpSender
from .emails import canonical_email
from .errors import AuthError

__all__ = ["Inbox", "OtpMessage", "canonical_address", "mask_address", "new_code", "normalize_code",
           "sending"]

log = logging.getLogger("banata_middleware.otp")

#: What a code is for: answering a pending sign-in, stepping a session up, or confirming a new address.
PURPOSES = ("sign_in", "step_up", "enrol")

_PHONE = re.compile(r"\+[1-9][0-9]{7,14}")


def new_code(digits: int) -> str:
    """``digits`` decimal digits, uniformly drawn (``secrets``), leading zeros kept."""
    return str(secrets.randbelow(10**digits)).zfill(digits)


def normalize_code(raw: str) -> str:
    """The digits of a code as a person types it (``123 456``, ``123-456``); anything else is kept,
    so it simply fails to match (and counts as a wrong code, as a malformed TOTP code does)."""
    return "".join(raw.replace("-", "").split())


def canonical_address(channel: str, raw: str) -> str:
    """The address a code goes to, in one form: an email in the canonical form of accounts
    (``emails.canonical_email``), a phone number in E.164 (``+`` and 8 to 15 digits; spaces, dots,
    dashes and brackets are dropped). ``AuthError(400, VALIDATION_ERROR)`` otherwise."""
    if channel == "email":
        return canonical_email(raw)
    number = re.sub(r"[\s().-]", "", raw)
    if not _PHONE.fullmatch(number):
        raise AuthError(400, "VALIDATION_ERROR", "'to' must be a phone number in international form, e.g. +15551234567")
    return number


def mask_address(channel: str, address: str) -> str:
    """An address as a page may show it without giving it away: ``a***@example.com``, ``+*******4567``."""
    if channel == "email":
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}***@{domain}"
    return address[:1] + "*" * max(0, len(address) - 5) + address[-4:]


@dataclass(frozen=True, slots=True)
class OtpMessage:
    """What the app's sender (``OtpConfig.sender``) gets: send ``code`` to ``to`` over ``channel``.

    ``user`` is the user as the endpoints answer it (``id``, ``email``, ``name``...). ``purpose`` is
    "sign_in", "step_up" or "enrol" (confirming a new address: say so in the text). ``expires_at``
    is Unix seconds. The code is left out of ``repr``, so a message logged by mistake does not give it away.
    """

    user: dict[str, Any]
    channel: str
    to: str
    code: str = field(repr=False)
    purpose: str
    expires_at: float
    app_name: str = ""

    @property
    def user_id(self) -> str:
        return str(self.user["id"])

    def text(self) -> str:
        """A plain message body an app may use as it is."""
        what = {"sign_in": "sign in", "step_up": "confirm it is you",
                "enrol": "confirm this address for sign-in codes"}[self.purpose]
        app = f"{self.app_name}: " if self.app_name else ""
        return f"{app}{self.code} is your code to {what}. It expires in a few minutes. Never share it."


def sending(sender: OtpSender, message: OtpMessage, timeout: float) -> tuple[Callable[[], Any], bool]:
    """(what to call, whether it is a coroutine function) for an ``effects.Call``: the call answers
    True when the sender returned, False when it raised or timed out. Only the exception's type is
    logged: its text may quote the message, code included."""
    method = None if inspect.isroutine(sender) else type(sender).__call__  # an object with an async __call__
    if inspect.iscoroutinefunction(sender) or inspect.iscoroutinefunction(method):
        async def send_async() -> bool:
            try:
                await asyncio.wait_for(_awaited(sender(message)), timeout)
            except Exception as exc:
                _failed(message, exc)
                return False
            return True

        return send_async, True

    def send() -> bool:
        try:
            result = sender(message)
            if inspect.isawaitable(result):  # a plain function that returned an awaitable
                _run(_awaited(result), timeout)
        except Exception as exc:
            _failed(message, exc)
            return False
        return True

    return send, False


async def _awaited(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result


def _run(coro: Coroutine[Any, Any, None], timeout: float) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


def _failed(message: OtpMessage, exc: BaseException) -> None:
    kind = "timed out" if isinstance(exc, TimeoutError) else f"raised {type(exc).__name__}"
    log.warning("the one-time code sender %s for user %s (%s)", kind, message.user_id, message.channel)


class Inbox:
    """An in-memory sender that keeps every message: the simulator's ``mfa_inbox`` fixture and the
    demo's outbox page. ``OtpConfig(sender=inbox)``; then ``inbox.latest(user_id=...).code``.
    Nothing leaves the process."""

    def __init__(self, limit: int = 1000) -> None:
        self.messages: list[OtpMessage] = []
        self.limit = limit
        self._lock = threading.Lock()

    def __call__(self, message: OtpMessage) -> None:
        with self._lock:
            self.messages.append(message)
            del self.messages[:-self.limit]

    def for_user(self, user_id: str) -> list[OtpMessage]:
        with self._lock:
            return [m for m in self.messages if m.user_id == user_id]

    def latest(self, *, user_id: str | None = None, to: str | None = None) -> OtpMessage:
        """The newest message (for ``user_id`` and/or to ``to``); ``AssertionError`` if there is none."""
        with self._lock:
            for m in reversed(self.messages):
                if user_id in (None, m.user_id) and to in (None, m.to):
                    return m
        who = " ".join(f"{k}={v}" for k, v in (("user_id", user_id), ("to", to)) if v)
        raise AssertionError(f"no one-time code was sent{' for ' + who if who else ''}; "
                             f"the inbox has {len(self.messages)} message(s)")

    def latest_code(self, *, user_id: str | None = None, to: str | None = None) -> str:
        return self.latest(user_id=user_id, to=to).code

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

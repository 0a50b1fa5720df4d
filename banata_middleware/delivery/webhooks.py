"""Signed webhooks for audit events, following the Standard Webhooks spec (standardwebhooks.com).

Each delivery is an HTTP POST of ``{"type", "timestamp", "data"}`` (JSON) with three headers:
``webhook-id`` (the same for every attempt of one event: receivers dedupe by it),
``webhook-timestamp`` (Unix seconds of this attempt) and ``webhook-signature``
(``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body`` under the endpoint's secret, which is
``whsec_`` + base64 of the key). ``verify_webhook`` is the receiver's side.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import re
import secrets
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..clock import SYSTEM_CLOCK, Clock
from .drainer import DeliveryFailed, OneCallAtATime

if TYPE_CHECKING:
    from ..stores.records import AuditRecord

__all__ = ["WebhookConsumer", "WebhookEndpoint", "WebhookVerificationError", "event_payload",
           "new_webhook_secret", "sign_webhook", "verify_webhook", "webhook_id"]

_PREFIX = "whsec_"
# Unix seconds, ASCII digits only: str.isdigit() also takes '²' and numbers int() refuses (4300+ digits).
_STAMP = re.compile(r"[0-9]{1,12}\Z")


def _key(secret: str) -> bytes:
    try:
        key = base64.b64decode(secret.removeprefix(_PREFIX), validate=True)
    except ValueError:
        raise ValueError("a webhook secret is 'whsec_' + base64 (new_webhook_secret() makes one)") from None
    if len(key) < 16:
        raise ValueError("a webhook secret needs at least 16 random bytes")
    return key


def new_webhook_secret() -> str:
    """A new endpoint secret (24 random bytes), in the spec's ``whsec_`` form."""
    return _PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


class WebhookEndpoint:
    """Where to POST events: ``url``, the shared ``secret`` (``whsec_...``), and the event types
    to send (``kinds``; ``None``: every audit event). ``name`` is its cursor's name in
    ``banata-mfa webhooks list`` (default: the host and a digest of the URL); keep it stable, or
    the endpoint starts again from the newest event."""

    __slots__ = ("_key", "kinds", "name", "url")

    def __init__(self, url: str, secret: str, kinds: Iterable[str] | None = None, *, name: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("a webhook URL is http:// or https:// with a host")
        self.url = url
        self._key = _key(secret)
        self.kinds = None if kinds is None else frozenset(kinds)
        if self.kinds is not None and any(k.split() != [k] for k in self.kinds):
            raise ValueError("an event type is a non-empty name without spaces, e.g. 'two_factor.enabled'")
        # Not the URL itself: its query may carry a token, and the name is printed and stored.
        digest = hashlib.sha256(url.encode()).hexdigest()[:10]
        self.name = f"webhook:{name or f'{parts.hostname}-{digest}'}"
        if len(self.name) > 128:
            raise ValueError("a webhook endpoint name has at most 119 characters")

    def __repr__(self) -> str:
        return f"WebhookEndpoint(name={self.name!r}, kinds={self.kinds!r})"  # never the secret


def webhook_id(event: AuditRecord) -> str:
    """Stable for one event, so receivers dedupe retries and replays. The event's time is in it
    too: SQLite before migration 0004 reused an id once every older row was pruned."""
    return f"evt_{event.id}_{event.at}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_payload(event: AuditRecord) -> dict[str, Any]:
    """The JSON body: the audit event's public fields (audit events never hold a secret; the
    session is named by its id hash, never by the cookie)."""
    data: dict[str, Any] = {"eventId": event.id, "type": event.type, "userId": event.user_id, "at": _iso(event.at),
                            "ip": event.ip, "userAgent": event.user_agent}
    if event.session_id:
        data["sessionId"] = event.session_id
    if event.detail:
        data["detail"] = dict(event.detail)
    return {"type": event.type, "timestamp": _iso(event.at), "data": data}


def sign_webhook(secret: str | bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value for one message."""
    key = secret if isinstance(secret, bytes) else _key(secret)
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh webhook from us: reject it (answer 400)."""


def verify_webhook(secret: str, headers: Mapping[str, str], body: bytes | str, *, tolerance: int = 300,
                   clock: Clock = SYSTEM_CLOCK) -> dict[str, Any]:
    """For receivers: check the signature (constant time) and that the timestamp is within
    ``tolerance`` seconds of now, then return the parsed payload. Raises ``WebhookVerificationError``.
    Dedupe by ``headers["webhook-id"]``: a delivery may come more than once."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and _STAMP.match(stamp) and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if abs(clock.now() - int(stamp)) > tolerance:
        raise WebhookVerificationError("the webhook timestamp is outside the tolerance")
    raw = body.encode() if isinstance(body, str) else body
    expected = sign_webhook(secret, msg_id, int(stamp), raw).encode()
    # Several space-separated signatures may come (the sender rotating its secret): any one will do.
    if not any(hmac.compare_digest(expected, s.encode()) for s in signatures.split()):
        raise WebhookVerificationError("no valid webhook signature")
    payload: dict[str, Any] = json.loads(raw)
    return payload


class _HTTP(http.client.HTTPConnection):
    """A connection another thread can end at the delivery's deadline (``abort``): a receiver that
    answers a byte at a time never trips a per-read socket timeout. The lock makes the race with
    ``connect`` safe: either the socket exists and is shut down (a blocked read or write returns at
    once), or ``connect`` sees the abort and nothing is sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._abort_lock = threading.Lock()
        self._aborted = False

    def connect(self) -> None:
        super().connect()  # TCP (and TLS, in _HTTPS): each step bounded by the socket timeout
        with self._abort_lock:
            if self._aborted:
                self.close()
                raise TimeoutError

    def abort(self) -> None:
        with self._abort_lock:
            self._aborted = True
            if self.sock is not None:
                with contextlib.suppress(OSError):  # already closed
                    self.sock.shutdown(socket.SHUT_RDWR)


class _HTTPS(_HTTP, http.client.HTTPSConnection):
    pass


class WebhookConsumer:
    """One endpoint as a delivery consumer: a 2xx answer within the timeout is a delivery. A 3xx is
    a failure, never followed: that would POST the event somewhere nobody configured."""

    def __init__(self, endpoint: WebhookEndpoint, clock: Clock = SYSTEM_CLOCK) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.kinds = endpoint.kinds
        self.clock = clock
        self._calls = OneCallAtATime("banata-webhook")

    def deliver(self, event: AuditRecord, timeout: float) -> None:
        body = json.dumps(event_payload(event), separators=(",", ":")).encode()
        msg_id, stamp = webhook_id(event), int(self.clock.now())
        headers = {"content-type": "application/json", "user-agent": "banata-middleware-webhooks",
                   "webhook-id": msg_id, "webhook-timestamp": str(stamp),
                   "webhook-signature": sign_webhook(self.endpoint._key, msg_id, stamp, body)}
        parts = urlsplit(self.endpoint.url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        host = parts.hostname or ""  # WebhookEndpoint checked there is one
        if parts.scheme == "https":
            conn: _HTTP = _HTTPS(host, parts.port, timeout=timeout, context=ssl.create_default_context())
        else:
            conn = _HTTP(host, parts.port, timeout=timeout)
        status: list[int] = []

        def post() -> None:
            try:
                conn.request("POST", target, body, headers)
                with conn.getresponse() as response:
                    status.append(response.status)
            finally:
                conn.close()

        try:
            # The timeout is a deadline for the whole delivery (name lookup, connect, TLS, request,
            # answer), not per socket read: at the deadline the connection is shut down.
            self._calls.run(post, timeout, abort=conn.abort)
        except (OSError, http.client.HTTPException, ValueError) as exc:  # refused, reset, timed out, bad answer
            # The class name only: a message may carry the URL, whose query may hold a token.
            raise DeliveryFailed(type(exc).__name__) from None
        if not 200 <= status[0] < 300:
            raise DeliveryFailed(f"HTTP {status[0]}")

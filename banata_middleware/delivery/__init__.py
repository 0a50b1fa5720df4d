"""Durable delivery of audit events after commit: notices to the user and signed webhooks.

The audit table is the outbox (an event is written in the transaction of the change it records);
each consumer keeps a cursor in it (``stores.records.delivery``); ``Drainer`` delivers past the
cursors at least once, in order, with retries, backoff and dead letters. See docs/delivery.md.
"""

from __future__ import annotations

from .drainer import Consumer, DeliveryFailed, DeliveryPolicy, Drainer
from .notices import NOTICE_KINDS, Notice, NoticeConsumer, Notifier, Outbox
from .webhooks import (
    WebhookConsumer,
    WebhookEndpoint,
    WebhookVerificationError,
    event_payload,
    new_webhook_secret,
    sign_webhook,
    verify_webhook,
    webhook_id,
)

__all__ = [
    "NOTICE_KINDS", "Consumer", "DeliveryFailed", "DeliveryPolicy", "Drainer", "Notice", "NoticeConsumer",
    "Notifier", "Outbox", "WebhookConsumer", "WebhookEndpoint", "WebhookVerificationError", "event_payload",
    "new_webhook_secret", "sign_webhook", "verify_webhook", "webhook_id",
]

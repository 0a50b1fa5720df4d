"""``banata-mfa webhooks list|replay ID``: the delivery cursors and dead letters in the record store.

``list`` prints each consumer (the notifier, each webhook endpoint): its cursor, the events past it,
the head's failed attempts and backoff, and its dead letters. ``replay ID`` asks for event ``ID`` to
be delivered again (to every consumer that takes its type and has it behind its cursor or dead, or
to ``--consumer``); the running app's delivery thread sends it with the endpoint's secret, which
this command never needs.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["add_webhooks_commands", "run_webhooks"]


def add_webhooks_commands(subparsers: Any) -> None:
    cmd = subparsers.add_parser(
        "webhooks", help="delivery of notices and webhooks: list consumers and dead letters, replay an event",
        description="The URL may also come from BANATA_DATABASE_URL.")
    cmd.add_argument("webhooks_command", choices=["list", "replay"])
    cmd.add_argument("event_id", nargs="?", type=int, help="replay: the audit event id")
    cmd.add_argument("--consumer", default=None, help="replay: only to this consumer (e.g. webhook:NAME, notifier)")
    cmd.add_argument("--database-url", default=None, help="the app's record store, e.g. postgresql://user@host/db")
    cmd.add_argument("--table-prefix", default="banata_", help="prefix of every table name (default banata_)")


def _ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def run_webhooks(args: argparse.Namespace) -> int:
    from ..clock import SYSTEM_CLOCK
    from ..errors import AuthError
    from ..stores.records import RecordStore
    from ..stores.records.delivery import ListConsumers, ListDeadLetters, RequestReplay

    url = args.database_url or os.environ.get("BANATA_DATABASE_URL", "")
    if not url:
        print("banata-mfa webhooks: give --database-url URL (or set BANATA_DATABASE_URL)", file=sys.stderr)
        return 2
    if args.webhooks_command == "replay" and args.event_id is None:
        print("banata-mfa webhooks replay: give the event id", file=sys.stderr)
        return 2
    store = RecordStore(url, prefix=args.table_prefix)
    try:
        if args.webhooks_command == "replay":
            marked = store.execute(RequestReplay(args.event_id, int(SYSTEM_CLOCK.now() * 1000), args.consumer))
            if not marked:
                print(f"banata-mfa webhooks: nothing to replay for event {args.event_id} (no such event, not "
                      "a type the consumers take, or not delivered yet: still ahead of the cursor)", file=sys.stderr)
                return 1
            print(f"event {args.event_id}: replay requested for {marked} consumer(s); "
                  "the app's delivery thread sends it")
            return 0
        for c in store.execute(ListConsumers()):
            head = (f", head failed {c.attempts}x (next try {_ms(c.next_at)}: {c.last_error})" if c.attempts else "")
            print(f"{c.consumer}: delivered up to event {c.last_id}, {c.pending} event(s) after it, "
                  f"{c.dead_letters} dead letter(s){head}")
        for d in store.execute(ListDeadLetters()):
            state = f"replay due since {_ms(d.replay_at)}" if d.replay_at is not None else "dead"
            print(f"  dead letter {d.consumer} event {d.event_id} {d.type or '(pruned)'} user={d.user_id} "
                  f"attempts={d.attempts} failed={_ms(d.failed_at)} error={d.error!r} {state}")
        return 0
    except AuthError as exc:
        print(f"banata-mfa webhooks: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.dispose()

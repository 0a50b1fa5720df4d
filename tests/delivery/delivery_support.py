"""A real local HTTP receiver for webhook tests, and a BanataAuth wired for delivery."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from harness import free_port

sys.path.append(str(Path(__file__).resolve().parents[1] / "records"))  # the storage suite's databases
from harness import scratch_database
from records_support import BACKENDS

from banata_middleware import BanataAuth, BanataAuthConfig
from banata_middleware.delivery import DeliveryPolicy, Notifier, WebhookEndpoint
from banata_middleware.simulator.clocks import FrozenClock
from banata_middleware.stores.records import AppendAudit, AuditEntry, RecordStore

__all__ = ["BACKENDS", "POLICY", "POLL", "SECRET", "Delivery", "Receiver", "commit", "make_auth", "scratch_database"]

SECRET = "test-secret-" + "x" * 40
#: Short, deterministic delivery for tests: no thread, 3 attempts, 1 s then 2 s of (frozen) backoff.
#: How often a receiver's server loop looks for shutdown() (http.server's default, 0.5 s, is what each stop() waits).
POLL = 0.02
POLICY = DeliveryPolicy(timeout=0.5, max_attempts=3, backoff=1.0, lease=5.0, gap_grace=2.0, background=False)


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A threaded http.server on 127.0.0.1: ``status`` to answer, ``delay`` seconds to wait first.
    ``start()`` may be called after the endpoint was configured (the receiver "comes back up")."""

    port: int = field(default_factory=free_port)
    status: int = 204
    delay: float = 0.0
    received: list[Delivery] = field(default_factory=list)
    attempts: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks?token=query-token"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.attempts += 1
                if receiver.delay:
                    time.sleep(receiver.delay)
                if 200 <= receiver.status < 300:
                    receiver.received.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        # serve_forever checks for shutdown() every poll_interval (0.5 s by default): every test's
        # stop() would wait that long.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": POLL}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def make_auth(records: RecordStore, clock: FrozenClock, *, webhooks: tuple[WebhookEndpoint, ...] = (),
              notifier: Notifier | None = None, policy: DeliveryPolicy = POLICY) -> BanataAuth:
    config = BanataAuthConfig(app_name="Test", site_url="http://testserver", secret=SECRET, clock=clock)
    return BanataAuth(config, records=records, webhooks=webhooks, notifier=notifier, delivery=policy)


def commit(records: RecordStore, clock: FrozenClock, user_id: str, *types: str, **detail: str) -> None:
    """Events as a record operation writes them (the delivery layer does not care who wrote them)."""
    at = int(clock.now() * 1000)
    records.execute(AppendAudit(user_id, [AuditEntry(t, at, "203.0.113.7", "Browser/1.0", "sid-hash", detail)
                                          for t in types]))

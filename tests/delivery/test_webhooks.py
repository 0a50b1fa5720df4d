"""Webhooks delivered to a real local HTTP receiver: signed per Standard Webhooks (checked by the
independent ``standardwebhooks`` package), retried with backoff when the receiver is down, slow or
failing, never lost, dead-lettered after the last attempt, replayed on request, in order."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import standardwebhooks
from delivery_support import BACKENDS, SECRET, Receiver, commit, make_auth, scratch_database

from banata_middleware.cli import main as cli
from banata_middleware.delivery import (
    DeliveryPolicy,
    WebhookEndpoint,
    WebhookVerificationError,
    new_webhook_secret,
    verify_webhook,
)
from banata_middleware.simulator.clocks import FrozenClock
from banata_middleware.stores.records import ListAudit, RecordStore
from banata_middleware.stores.records.delivery import ListConsumers, ListDeadLetters


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new database on each backend: ids that commit out of order and leases between
    processes are what PostgreSQL and MariaDB do differently from SQLite."""
    with scratch_database(str(request.param), str(tmp_path)) as url:
        yield url


@pytest.fixture
def records(database: str) -> Iterator[RecordStore]:
    store = RecordStore(database)
    store.upgrade()
    yield store
    store.dispose()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def state(records: RecordStore, name: str) -> tuple[int, int, str]:
    c = next(c for c in records.execute(ListConsumers()) if c.consumer == name)
    return c.pending, c.attempts, c.last_error


def test_a_delivery_is_signed_so_that_the_standard_webhooks_library_verifies_it(
        records: RecordStore, clock: FrozenClock, receiver: Receiver) -> None:
    secret = new_webhook_secret()
    auth = make_auth(records, clock, webhooks=(WebhookEndpoint(receiver.start().url, secret),))
    commit(records, clock, "ann", "two_factor.enabled", method="totp")
    assert auth.deliver_pending() == 1
    [hit] = receiver.received
    payload = standardwebhooks.Webhook(secret).verify(hit.body, hit.headers)
    assert payload == verify_webhook(secret, hit.headers, hit.body, clock=clock)
    assert payload["type"] == "two_factor.enabled" and payload["timestamp"].endswith("Z")
    data = payload["data"]
    assert set(data) == {"eventId", "type", "userId", "at", "ip", "userAgent", "sessionId", "detail"}
    assert (data["userId"], data["ip"], data["userAgent"], data["detail"]) == ("ann", "203.0.113.7", "Browser/1.0",
                                                                                 {"method": "totp"})
    assert hit.headers["webhook-id"] == f"evt_{data['eventId']}_{int(clock.now() * 1000)}"
    # No secret anywhere in what went over the wire: not the endpoint's, not the app's.
    wire = hit.body.decode() + json.dumps(hit.headers)
    assert secret not in wire and secret.removeprefix("whsec_") not in wire and SECRET not in wire
    # A forged or stale request is refused, by both implementations.
    tampered = hit.body.replace(b"ann", b"bob")
    for check in (lambda: verify_webhook(secret, hit.headers, tampered, clock=clock),
                  lambda: standardwebhooks.Webhook(secret).verify(tampered, hit.headers)):
        with pytest.raises((WebhookVerificationError, standardwebhooks.WebhookVerificationError)):
            check()
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(secret, hit.headers, hit.body, clock=FrozenClock(clock.now() + 301))
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(new_webhook_secret(), hit.headers, hit.body, clock=clock)


def test_a_receiver_that_is_down_gets_the_events_in_order_once_it_is_up(
        records: RecordStore, clock: FrozenClock, receiver: Receiver) -> None:
    endpoint = WebhookEndpoint(receiver.url, new_webhook_secret(), name="down")  # nothing listens yet
    auth = make_auth(records, clock, webhooks=(endpoint,))
    commit(records, clock, "ann", "two_factor.enabled", "passkey.added", "two_factor.disabled")
    assert auth.deliver_pending() == 0
    assert state(records, endpoint.name) == (3, 1, "ConnectionRefusedError")
    assert auth.deliver_pending() == 0  # backing off: no attempt before 1 s has passed
    assert state(records, endpoint.name)[1] == 1
    clock.advance(1)
    assert auth.deliver_pending() == 0
    assert state(records, endpoint.name)[1] == 2  # the 2nd failure; the 3rd try waits 2 s
    receiver.start()
    clock.advance(1)
    assert auth.deliver_pending() == 0 and receiver.attempts == 0
    clock.advance(1)
    assert auth.deliver_pending() == 3
    assert [json.loads(d.body)["type"] for d in receiver.received] == [
        "two_factor.enabled", "passkey.added", "two_factor.disabled"]
    assert state(records, endpoint.name) == (0, 0, "")


@pytest.mark.parametrize("failure", ["500", "slow"])
def test_a_failing_or_slow_receiver_is_retried_with_the_same_webhook_id(
        records: RecordStore, clock: FrozenClock, receiver: Receiver, failure: str) -> None:
    if failure == "500":
        receiver.status = 500
    else:
        receiver.delay = 1.5  # past the 0.5 s timeout
    endpoint = WebhookEndpoint(receiver.start().url, new_webhook_secret(), name="flaky")
    auth = make_auth(records, clock, webhooks=(endpoint,))
    commit(records, clock, "ann", "two_factor.enabled")
    assert auth.deliver_pending() == 0
    assert state(records, endpoint.name) == (1, 1, "HTTP 500" if failure == "500" else "TimeoutError")
    receiver.status, receiver.delay = 204, 0.0
    clock.advance(1)
    assert auth.deliver_pending() == 1
    assert receiver.attempts == 2 and len(receiver.received) == 1
    assert receiver.received[0].headers["webhook-id"].startswith("evt_")


def test_after_the_last_attempt_an_event_is_a_dead_letter_and_can_be_replayed(
        records: RecordStore, clock: FrozenClock, receiver: Receiver, database: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    receiver.status = 500
    endpoint = WebhookEndpoint(receiver.start().url, new_webhook_secret(), name="dead")
    auth = make_auth(records, clock, webhooks=(endpoint,))
    commit(records, clock, "ann", "two_factor.enabled")
    commit(records, clock, "bob", "two_factor.enabled")
    for wait in (0, 1, 2):  # three attempts (POLICY.max_attempts), 1 s then 2 s apart
        clock.advance(wait)
        auth.deliver_pending()
    [dead] = records.execute(ListDeadLetters(endpoint.name))
    assert (dead.user_id, dead.attempts, dead.error) == ("ann", 3, "HTTP 500")
    # The cursor moved past it: bob's event (tried once in the same round) is delivered once the
    # receiver heals and its own backoff has passed.
    receiver.status = 204
    clock.advance(1)
    assert auth.deliver_pending() == 1
    assert [json.loads(d.body)["data"]["userId"] for d in receiver.received] == ["bob"]
    url = database
    assert cli(["webhooks", "list", "--database-url", url]) == 0
    listed = capsys.readouterr().out
    assert "webhook:dead: delivered up to event" in listed and "1 dead letter(s)" in listed
    assert f"dead letter webhook:dead event {dead.event_id} two_factor.enabled user=ann attempts=3" in listed
    assert "query-token" not in listed  # the URL (its query may hold a token) is never printed
    assert cli(["webhooks", "replay", str(dead.event_id), "--database-url", url]) == 0
    assert auth.deliver_pending() == 1
    assert [json.loads(d.body)["data"]["userId"] for d in receiver.received] == ["bob", "ann"]
    assert records.execute(ListDeadLetters(endpoint.name)) == ()
    assert cli(["webhooks", "replay", "999999", "--database-url", url]) == 1


def test_an_endpoint_gets_only_its_kinds_and_two_endpoints_keep_their_own_places(
        records: RecordStore, clock: FrozenClock) -> None:
    picky, everything = Receiver().start(), Receiver().start()
    try:
        auth = make_auth(records, clock, webhooks=(
            WebhookEndpoint(picky.url, new_webhook_secret(), kinds={"passkey.added"}, name="picky"),
            WebhookEndpoint(everything.url, new_webhook_secret(), name="all")))
        commit(records, clock, "ann", "session.created", "passkey.added", "two_factor.failed", "passkey.added")
        assert auth.deliver_pending() == 2 + 4
        assert [json.loads(d.body)["type"] for d in picky.received] == ["passkey.added"] * 2
        assert len(everything.received) == 4
        assert auth.deliver_pending() == 0  # delivered once
    finally:
        picky.stop()
        everything.stop()


def test_a_missing_id_is_waited_for_then_passed(records: RecordStore, clock: FrozenClock,
                                               receiver: Receiver) -> None:
    """Ids are taken at insert, not at commit: a smaller id may become visible after a larger one."""
    endpoint = WebhookEndpoint(receiver.start().url, new_webhook_secret(), name="gaps")
    auth = make_auth(records, clock, webhooks=(endpoint,))
    commit(records, clock, "ann", "first")
    assert auth.deliver_pending() == 1
    [first] = records.execute(ListAudit("ann"))
    t = records.schema.audit_events
    at = int(clock.now() * 1000)

    def insert(event_id: int, kind: str) -> None:  # as a transaction that took ``event_id`` commits
        with records.engine.begin() as conn:
            conn.execute(t.insert().values(id=event_id, user_id="ann", type=kind, at=at))

    insert(first.id + 2, "third")
    assert auth.deliver_pending() == 0  # id + 1 is missing: waited for, within the grace
    insert(first.id + 1, "second")  # the slower transaction commits
    assert auth.deliver_pending() == 2
    insert(first.id + 4, "fifth")  # id + 3 never comes (rolled back)
    assert auth.deliver_pending() == 0
    clock.advance(2)
    assert auth.deliver_pending() == 1
    assert [json.loads(d.body)["type"] for d in receiver.received] == ["first", "second", "third", "fifth"]


def test_two_processes_deliver_each_event_once(records: RecordStore, clock: FrozenClock,
                                               receiver: Receiver, database: str) -> None:
    endpoint = WebhookEndpoint(receiver.start().url, new_webhook_secret(), name="shared")
    first = make_auth(records, clock, webhooks=(endpoint,))
    other = RecordStore(database)
    second = make_auth(other, clock, webhooks=(endpoint,))
    try:
        for i in range(30):
            commit(records, clock, f"user-{i}", "two_factor.enabled")
        threads = [threading.Thread(target=a.deliver_pending) for a in (first, second, first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        clock.advance(10)  # past any lease: whatever is left goes now
        first.deliver_pending()
        users = [json.loads(d.body)["data"]["userId"] for d in receiver.received]
        assert users == [f"user-{i}" for i in range(30)]
    finally:
        other.dispose()


_CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path[:0] = [os.path.join({tests!r}, "delivery"), {tests!r}]
    from delivery_support import commit, make_auth
    from banata_middleware.delivery import DeliveryPolicy, WebhookEndpoint
    from banata_middleware.simulator.clocks import FrozenClock
    from banata_middleware.stores.records import ListAudit, RecordStore

    records = RecordStore({db!r})
    clock = FrozenClock()
    make_auth(records, clock, webhooks=(WebhookEndpoint({url!r}, {secret!r}, name="kill"),),
              policy=DeliveryPolicy(background=False))
    commit(records, clock, "ann", "two_factor.enabled")  # committed: the change and its event
    print("committed", flush=True)
    time.sleep(60)  # killed here, before any delivery
""")


def test_an_event_committed_by_a_process_killed_before_delivery_is_delivered_after_restart(
        records: RecordStore, database: str, clock: FrozenClock, receiver: Receiver) -> None:
    secret = new_webhook_secret()
    tests = str(Path(__file__).resolve().parents[1])
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(tests=tests, db=database, url=receiver.start().url, secret=secret)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "committed"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert receiver.attempts == 0
    # The restarted app: same database, same endpoint, its delivery thread on.
    auth = make_auth(records, clock, webhooks=(WebhookEndpoint(receiver.url, secret, name="kill"),),
                     policy=DeliveryPolicy(poll_interval=0.05))
    try:
        for _ in range(100):
            if receiver.received:
                break
            time.sleep(0.05)
    finally:
        auth.close()
    [hit] = receiver.received
    assert standardwebhooks.Webhook(secret).verify(hit.body, hit.headers)["data"]["userId"] == "ann"


def test_a_replay_of_a_type_the_endpoint_no_longer_takes_is_settled_without_a_post(
        records: RecordStore, clock: FrozenClock, receiver: Receiver) -> None:
    """R5-1, the drainer's side: the endpoint's kinds changed between the request and the replay."""
    from banata_middleware.stores.records.delivery import RequestReplay

    secret = new_webhook_secret()
    auth = make_auth(records, clock, webhooks=(WebhookEndpoint(receiver.start().url, secret, name="k"),))
    commit(records, clock, "ann", "two_factor.enabled")
    assert auth.deliver_pending() == 1
    [event] = [e for e in records.execute(ListAudit()) if e.user_id == "ann"]
    assert records.execute(RequestReplay(event.id, int(clock.now() * 1000), "webhook:k")) == 1
    restarted = make_auth(records, clock, webhooks=(
        WebhookEndpoint(receiver.url, secret, kinds={"passkey.added"}, name="k"),))
    clock.advance(10)  # the first process's lease ran out
    assert restarted.deliver_pending() == 0
    assert len(receiver.received) == 1 and records.execute(ListDeadLetters("webhook:k")) == ()

"""The drainer: delivers the audit events past each consumer's cursor, in id order, at least once.

Each consumer (the notifier, each webhook endpoint) is drained by a thread of its own, so a slow
one holds back no other. The thread takes its consumer's lease (``ClaimBatch``: one conditional
UPDATE, so two processes never deliver for it at once), then walks the events after the cursor: an
event the consumer does not take is passed over, one it takes is delivered, and the cursor moves
past it only after the delivery succeeded. A failure is counted
on the cursor and retried after an exponential backoff; after ``max_attempts`` the event becomes a
dead letter and the cursor moves on. A crash anywhere leaves the cursor at or before the last
delivered event: the event is delivered again (at least once, never lost).

Ids are taken when a row is inserted, not when it commits: on PostgreSQL and MariaDB a transaction
that started first may commit a smaller id after a larger one is visible. So the drainer never
steps over a missing id at once: it waits ``gap_grace`` (by the Clock) for it to appear, then
treats it as rolled back (a failed transaction, or rows pruned by retention).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import AuthError
from ..stores.records.delivery import (
    AdvanceCursor,
    ClaimBatch,
    DeadLetter,
    FinishReplay,
    PostponeHead,
    RegisterConsumer,
)

if TYPE_CHECKING:
    from ..clock import Clock
    from ..stores.records import AuditRecord, RecordStore

__all__ = ["Consumer", "DeliveryFailed", "DeliveryPolicy", "Drainer", "OneCallAtATime"]

log = logging.getLogger("banata_middleware.delivery")


class DeliveryFailed(Exception):
    """A delivery did not succeed. The message is short and holds no secret (it is logged and stored)."""


class OneCallAtATime:
    """Runs a consumer's calls in a thread of their own, each with a hard deadline, so the drainer
    never waits longer than the timeout (a sync callee cannot be interrupted). A call still running
    at its deadline is abandoned: ``abort`` (if given) is asked to end it, e.g. by closing its
    connection. No new call starts while an abandoned one runs on: the next attempt waits for it
    within its own timeout, then fails without starting another thread. A callee that hangs for a
    day holds ONE thread, never one per attempt, and its events still go their way of retries and
    dead letters."""

    def __init__(self, thread_name: str) -> None:
        self.thread_name = thread_name
        self._running: threading.Thread | None = None

    def run(self, call: Callable[[], None], timeout: float, abort: Callable[[], None] | None = None) -> None:
        """``call()`` within ``timeout`` seconds; its exceptions are re-raised. ``TimeoutError``
        when it is still running then; ``DeliveryFailed`` when the previous call still is."""
        deadline = time.monotonic() + timeout
        if self._running is not None:
            self._running.join(timeout)
            if self._running.is_alive():
                raise DeliveryFailed("still busy with the previous call")
            self._running = None
        failure: list[BaseException] = []

        def guarded() -> None:
            try:
                call()
            except BaseException as exc:  # handed to the drainer's thread below
                failure.append(exc)

        worker = threading.Thread(target=guarded, name=self.thread_name, daemon=True)
        worker.start()
        worker.join(max(deadline - time.monotonic(), 0.0))
        if worker.is_alive():
            self._running = worker
            if abort is not None:
                abort()
            raise TimeoutError
        if failure:
            if isinstance(failure[0], Exception):
                raise failure[0]
            raise DeliveryFailed(f"raised {type(failure[0]).__name__}")  # SystemExit &c. end only that thread


class Consumer(Protocol):
    #: The cursor's name: stable across restarts, unique per consumer, no secret in it.
    name: str
    #: The audit event types it takes (``None``: every type). Stored on its cursor at registration,
    #: so a replay request (``banata-mfa webhooks replay``) marks only consumers that take the type.
    kinds: frozenset[str] | None

    def deliver(self, event: AuditRecord, timeout: float) -> None:
        """Deliver ``event`` within ``timeout`` seconds or raise ``DeliveryFailed``."""


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How notices and webhooks are delivered (``BanataAuth(..., delivery=DeliveryPolicy(...))``).

    ``timeout``: seconds one delivery may take. ``max_attempts``: tries of one event before it is
    a dead letter. ``backoff``/``max_backoff``: seconds before the 2nd attempt, doubled each time,
    capped. ``lease``: seconds a process holds a consumer before another may take over (longer than
    ``timeout``). ``gap_grace``: seconds a missing id is waited for. ``poll_interval``: seconds the
    background thread sleeps when nothing woke it. ``background=False``: no thread; call
    ``BanataAuth.deliver_pending()`` yourself (tests, a separate worker process)."""

    timeout: float = 5.0
    max_attempts: int = 8
    backoff: float = 2.0
    max_backoff: float = 3600.0
    lease: float = 60.0
    gap_grace: float = 5.0
    poll_interval: float = 1.0
    batch: int = 100
    background: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.batch < 1:
            raise ValueError("max_attempts and batch must be at least 1")
        if self.lease <= self.timeout:
            raise ValueError("the lease must be longer than one delivery's timeout")

    def delay_ms(self, failures: int) -> int:
        """Backoff after the ``failures``-th failure of the head event."""
        return int(min(self.backoff * 2 ** (failures - 1), self.max_backoff) * 1000)


def takes(consumer: Consumer, event: AuditRecord) -> bool:
    return consumer.kinds is None or event.type in consumer.kinds


class Drainer:
    def __init__(self, records: RecordStore, consumers: Sequence[Consumer], clock: Clock,
                 policy: DeliveryPolicy) -> None:
        if len({c.name for c in consumers}) != len(consumers):
            raise ValueError("two delivery consumers share a name: give each webhook endpoint its own name")
        self.records = records
        self.consumers = tuple(consumers)
        self.clock = clock
        self.policy = policy
        self.owner = secrets.token_hex(8)  # this process's lease owner
        self._registered: set[str] = set()
        # consumer -> (before, after, first seen ms): the missing ids its last walk stopped at. One
        # per consumer, forgotten once the walk gets past it (the id came, or its grace ran out).
        self._gaps: dict[str, tuple[int, int, int]] = {}
        # Consumers do not wait for each other: each has its own background thread and its own lock
        # (one drain of a consumer at a time in this process: its thread vs deliver_pending).
        self._locks = {c.name: threading.Lock() for c in self.consumers}
        self._wakes = {c.name: threading.Event() for c in self.consumers}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Register now, before this process commits anything: a new consumer starts at the newest
        # event, so an event committed before its registration would never be delivered to it.
        for consumer in self.consumers:
            self._register(consumer)

    def _now(self) -> int:
        return int(self.clock.now() * 1000)

    def _register(self, consumer: Consumer) -> bool:
        if consumer.name not in self._registered:
            try:
                self.records.execute(RegisterConsumer(consumer.name, consumer.kinds))
            except AuthError:
                return False  # the store is down: nothing commits meanwhile; the next round registers it
            self._registered.add(consumer.name)
        return True

    # -- the background threads, one per consumer ----------------------------------------------
    def start(self) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=self._loop, args=(c,), name=f"banata-delivery {c.name}",
                                              daemon=True) for c in self.consumers]
            for thread in self._threads:
                thread.start()

    def poke(self) -> None:
        """Something committed: drain soon (cheap; never blocks the caller)."""
        for wake in self._wakes.values():
            wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.poke()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        self._threads = []

    def _loop(self, consumer: Consumer) -> None:
        wake = self._wakes[consumer.name]
        while not self._stop.is_set():
            wake.clear()
            try:
                self._round(consumer)
            except Exception:  # the thread must outlive any bug in one round; the cursor keeps the work
                log.exception("delivery round for %s failed", consumer.name)
            wake.wait(self.policy.poll_interval)

    # -- one round -----------------------------------------------------------------------------
    def drain(self) -> int:
        """Deliver what is due for every consumer, each in a thread of its own (a slow endpoint
        holds back no other consumer); returns the number of deliveries that succeeded."""
        if len(self.consumers) == 1:
            return self._round(self.consumers[0])
        with ThreadPoolExecutor(len(self.consumers), thread_name_prefix="banata-delivery") as pool:
            return sum(pool.map(self._round, self.consumers))

    def _round(self, consumer: Consumer) -> int:
        """One consumer's round. A store outage ends it quietly (logged by the store): the next resumes."""
        with self._locks[consumer.name]:
            try:
                return self._drain(consumer) if self._register(consumer) else 0
            except AuthError:
                return 0

    def _drain(self, consumer: Consumer) -> int:
        p, name = self.policy, consumer.name
        lease_ms = int(p.lease * 1000)
        delivered = 0
        while True:
            now = self._now()
            claim = self.records.execute(ClaimBatch(name, self.owner, now, lease_ms, p.batch))
            if claim is None:
                return delivered  # another process holds this consumer
            for replay in claim.replays:
                # A type the consumer does not take (its kinds changed since the request) is passed
                # over, as the walk passes such events: settled without a delivery.
                taken = takes(consumer, replay.event)
                error = self._attempt(consumer, replay.event, 0) if taken else None
                delivered += taken and error is None
                done = self._now()
                if not self.records.execute(FinishReplay(name, self.owner, replay.event.id, replay.replay_at,
                                                         error is None, done, done + lease_ms, error or "")):
                    return delivered  # our lease ran out (another process took over), or a new request came
            if claim.next_at > now:
                return delivered  # the head event is backing off
            stored, attempts = claim.last_id, claim.attempts  # where the cursor is in SQL
            seen = stored  # the last id looked at (passed over events are advanced lazily)
            waiting = self._gaps.pop(name, None)
            for event in claim.events:
                if event.id != seen + 1:  # missing ids: committed late, or rolled back or pruned
                    first = waiting[2] if waiting is not None and waiting[:2] == (seen, event.id) else now
                    if now - first < p.gap_grace * 1000:
                        self._gaps[name] = (seen, event.id, first)
                        break
                if not takes(consumer, event):
                    seen = event.id
                    continue
                error = self._attempt(consumer, event, attempts)
                now = self._now()
                if error is None:
                    op: AdvanceCursor | DeadLetter | PostponeHead = AdvanceCursor(
                        name, self.owner, stored, attempts, event.id, now + lease_ms)
                    delivered += 1
                elif attempts + 1 >= p.max_attempts:
                    log.warning("delivery to %s gave up event %d after %d attempts: a dead letter",
                                name, event.id, attempts + 1)
                    op = DeadLetter(name, self.owner, stored, attempts, event.id, now, error)
                else:
                    op = PostponeHead(name, self.owner, stored, attempts, now + p.delay_ms(attempts + 1), error)
                if not self.records.execute(op):
                    return delivered  # our lease ran out and another process moved on: stop
                if isinstance(op, PostponeHead):
                    return delivered
                stored = seen = event.id
                attempts = 0
            if seen > stored and not self.records.execute(
                    AdvanceCursor(name, self.owner, stored, attempts, seen, self._now() + lease_ms)):
                return delivered
            if len(claim.events) < p.batch or seen != claim.events[-1].id:
                return delivered  # drained, or stopped at a gap still within its grace

    def _attempt(self, consumer: Consumer, event: AuditRecord, failures: int) -> str | None:
        """Deliver once; None on success, else the short reason (logged, stored on the cursor)."""
        try:
            consumer.deliver(event, self.policy.timeout)
        except DeliveryFailed as exc:
            error = str(exc)
        except Exception as exc:  # a consumer's bug must not stop the others; its message may hold anything
            error = type(exc).__name__
        else:
            return None
        log.warning("delivery to %s failed for event %d (attempt %d): %s", consumer.name, event.id,
                    failures + 1, error)
        return error

"""Delivery cursors and dead letters: the audit table is the outbox, each consumer keeps its place in it.

The audit rows of a record change are written in the change's transaction (``ops``), so an event
exists exactly when its change committed. A consumer (the notifier, each webhook endpoint) owns one
row of ``delivery_cursors``: the id of the last event it is done with, the lease that lets one
process at a time deliver for it, and the attempts and next attempt time of the event at its head
(exponential backoff). An event given up after the last attempt moves to ``dead_letters``, where
``RequestReplay`` can send it again.

Every state change is ONE conditional UPDATE whose rowcount decides: the lease is taken only if it
is free, expired or already ours; the cursor moves only if it is still where the holder saw it
(``last_id`` and ``attempts`` compared), so a process whose lease ran out meanwhile changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .audit import AuditRecord, audit_record
from .ops import RecordOp, SqlGen
from .types import Ident, Millis

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement, Executable

    from .schema import Schema

__all__ = ["AdvanceCursor", "Claim", "ClaimBatch", "ConsumerState", "DeadLetter", "DeadLetterEvent",
           "FinishReplay", "ListConsumers", "ListDeadLetters", "PostponeHead", "RegisterConsumer", "Replay",
           "RequestReplay", "define_tables"]

ERROR_LENGTH = 200


def define_tables(metadata: MetaData, prefix: str) -> tuple[Table, Table]:
    cursors = Table(
        f"{prefix}delivery_cursors", metadata,
        Column("consumer", Ident(128), primary_key=True),
        Column("last_id", BigInteger, nullable=False, server_default="0"),  # audit_events.id delivered up to
        Column("lease_owner", String(64), nullable=False, server_default=""),
        Column("lease_until", Millis, nullable=False, server_default="0"),
        Column("attempts", Integer, nullable=False, server_default="0"),  # failed attempts of the head event
        Column("next_at", Millis, nullable=False, server_default="0"),  # no attempt before (backoff)
        Column("last_error", String(ERROR_LENGTH), nullable=False, server_default=""),
        # The event types the consumer takes, each with a space either side (NULL: every type), as
        # its process registered it: a replay request marks only consumers that take the type.
        Column("kinds", Text, nullable=True),
    )
    dead = Table(
        f"{prefix}dead_letters", metadata,
        Column("consumer", Ident(128), primary_key=True),
        Column("event_id", BigInteger, primary_key=True, autoincrement=False),
        Column("attempts", Integer, nullable=False),
        Column("failed_at", Millis, nullable=False),
        Column("error", String(ERROR_LENGTH), nullable=False, server_default=""),
        Column("replay_at", Millis, nullable=True),  # set: a replay was asked for and is due
    )
    return cursors, dead


def _insert_absent(schema: Schema, table: Table, values: dict[str, object]) -> Executable:
    """INSERT unless the primary key exists: one statement, safe under concurrency."""
    if schema.dialect == "postgresql":
        return postgresql.insert(table).values(values).on_conflict_do_nothing()
    if schema.dialect in ("mysql", "mariadb"):
        key = next(iter(table.primary_key.columns))
        return mysql.insert(table).values(values).on_duplicate_key_update({key.name: key})
    if schema.dialect == "sqlite":
        return sqlite.insert(table).values(values).on_conflict_do_nothing()
    raise ValueError(f"unsupported SQL dialect {schema.dialect!r}")


def _kinds(kinds: frozenset[str] | None) -> str | None:
    return None if kinds is None else "".join(f" {k} " for k in sorted(kinds))


@dataclass(frozen=True, slots=True)
class RegisterConsumer(RecordOp[int]):
    """Create the consumer's cursor at the newest event unless it exists (a new consumer gets what
    happens from now on, not the whole history; a known one keeps its place), and record the event
    types it takes (``kinds``, ``None``: every type; configuration, so the last process to start
    says). Replies with the cursor."""

    consumer: str
    kinds: frozenset[str] | None = None

    def run(self, schema: Schema) -> SqlGen[int]:
        c = schema.delivery_cursors
        newest = (yield select(func.coalesce(func.max(schema.audit_events.c.id), 0))).scalar_one()
        yield _insert_absent(schema, c, {"consumer": self.consumer, "last_id": int(newest)})
        yield update(c).where(c.c.consumer == self.consumer).values(kinds=_kinds(self.kinds))
        return int((yield select(c.c.last_id).where(c.c.consumer == self.consumer)).scalar_one())


@dataclass(frozen=True, slots=True)
class Replay:
    """A dead letter whose replay is due (``replay_at`` identifies the request)."""

    event: AuditRecord
    replay_at: int


@dataclass(frozen=True, slots=True)
class Claim:
    """What the lease holder saw: the cursor, the head's attempts and backoff, the events after the
    cursor (every type, in id order: the gaps between ids matter) and the replays due."""

    last_id: int
    attempts: int
    next_at: int
    events: tuple[AuditRecord, ...]
    replays: tuple[Replay, ...]


@dataclass(frozen=True, slots=True)
class ClaimBatch(RecordOp["Claim | None"]):
    """Take (or renew) the consumer's lease until ``now + lease_ms`` and read up to ``limit`` events
    past its cursor. ``None``: another process holds the lease (or the consumer is not registered)."""

    consumer: str
    owner: str
    now: int
    lease_ms: int
    limit: int = 100

    def run(self, schema: Schema) -> SqlGen[Claim | None]:
        c, a, d = schema.delivery_cursors, schema.audit_events, schema.dead_letters
        taken = (yield update(c).where(
            c.c.consumer == self.consumer, (c.c.lease_until <= self.now) | (c.c.lease_owner == self.owner),
        ).values(lease_owner=self.owner, lease_until=self.now + self.lease_ms)).rowcount
        if taken != 1:
            return None
        row = (yield select(c.c.last_id, c.c.attempts, c.c.next_at).where(c.c.consumer == self.consumer)).one()
        last_id = int(row.last_id)
        events = tuple(audit_record(r) for r in (yield select(a).where(a.c.id > last_id)
                                                 .order_by(a.c.id).limit(self.limit)).all())
        due = (yield select(a, d.c.replay_at).join(d, d.c.event_id == a.c.id).where(
            d.c.consumer == self.consumer, d.c.replay_at.is_not(None), d.c.replay_at <= self.now,
        ).order_by(a.c.id).limit(self.limit)).all()
        return Claim(last_id, int(row.attempts), int(row.next_at), events,
                     tuple(Replay(audit_record(r), int(r.replay_at)) for r in due))


def _holder(schema: Schema, consumer: str, owner: str, last_id: int, attempts: int) -> ColumnElement[bool]:
    """The condition of every cursor move: still our lease, the cursor and head where we saw them."""
    c = schema.delivery_cursors
    return and_(c.c.consumer == consumer, c.c.lease_owner == owner, c.c.last_id == last_id, c.c.attempts == attempts)


@dataclass(frozen=True, slots=True)
class AdvanceCursor(RecordOp[bool]):
    """The events up to ``to`` are done (delivered or not for this consumer): move the cursor,
    reset the head's attempts, renew the lease. False: the lease or the cursor moved meanwhile."""

    consumer: str
    owner: str
    last_id: int
    attempts: int
    to: int
    lease_until: int

    def run(self, schema: Schema) -> SqlGen[bool]:
        c = schema.delivery_cursors
        moved = (yield update(c).where(_holder(schema, self.consumer, self.owner, self.last_id, self.attempts))
                 .values(last_id=self.to, attempts=0, next_at=0, last_error="", lease_until=self.lease_until))
        return bool(moved.rowcount == 1)


@dataclass(frozen=True, slots=True)
class PostponeHead(RecordOp[bool]):
    """The head event failed: count the attempt and wait until ``next_at`` (the backoff)."""

    consumer: str
    owner: str
    last_id: int
    attempts: int
    next_at: int
    error: str

    def run(self, schema: Schema) -> SqlGen[bool]:
        c = schema.delivery_cursors
        moved = (yield update(c).where(_holder(schema, self.consumer, self.owner, self.last_id, self.attempts))
                 .values(attempts=self.attempts + 1, next_at=self.next_at, last_error=self.error[:ERROR_LENGTH]))
        return bool(moved.rowcount == 1)


@dataclass(frozen=True, slots=True)
class DeadLetter(RecordOp[bool]):
    """The head event failed its last attempt: give it up (a dead letter) and move past it, in one
    transaction, so it is never both behind the cursor and missing from the dead letters."""

    consumer: str
    owner: str
    last_id: int
    attempts: int
    event_id: int
    at: int
    error: str

    def run(self, schema: Schema) -> SqlGen[bool]:
        c, d = schema.delivery_cursors, schema.dead_letters
        moved = (yield update(c).where(_holder(schema, self.consumer, self.owner, self.last_id, self.attempts))
                 .values(last_id=self.event_id, attempts=0, next_at=0, last_error="")).rowcount
        if moved != 1:
            return False
        yield _insert_absent(schema, d, {"consumer": self.consumer, "event_id": self.event_id,
                                         "attempts": self.attempts + 1, "failed_at": self.at,
                                         "error": self.error[:ERROR_LENGTH], "replay_at": None})
        return True


@dataclass(frozen=True, slots=True)
class FinishReplay(RecordOp[bool]):
    """A replay was tried: delivered, the dead letter goes; failed, it stays dead with one more
    attempt. Only the replay request that was claimed (``replay_at``) is settled, and only by the
    lease holder, whose lease is renewed until ``lease_until`` in the same transaction (a run of
    slow replays keeps it, as cursor moves do). False: the lease or the request changed meanwhile."""

    consumer: str
    owner: str
    event_id: int
    replay_at: int
    delivered: bool
    at: int
    lease_until: int
    error: str = ""

    def run(self, schema: Schema) -> SqlGen[bool]:
        c, d = schema.delivery_cursors, schema.dead_letters
        held = (yield update(c).where(c.c.consumer == self.consumer, c.c.lease_owner == self.owner)
                .values(lease_until=self.lease_until)).rowcount
        if held != 1:
            return False
        where = (d.c.consumer == self.consumer, d.c.event_id == self.event_id, d.c.replay_at == self.replay_at)
        if self.delivered:
            return bool((yield delete(d).where(*where)).rowcount == 1)
        failed = (yield update(d).where(*where).values(
            replay_at=None, attempts=d.c.attempts + 1, failed_at=self.at, error=self.error[:ERROR_LENGTH]))
        return bool(failed.rowcount == 1)


@dataclass(frozen=True, slots=True)
class RequestReplay(RecordOp[int]):
    """Deliver event ``event_id`` again to ``consumer`` (every consumer: ``None``) if it takes the
    event's type: a dead letter is marked due; an event a consumer already delivered gets a dead
    letter row marked due. Events still ahead of a cursor need nothing (they will be delivered), and
    a consumer that passed the event over (not its type) gets nothing. Replies with the rows marked."""

    event_id: int
    at: int
    consumer: str | None = None
    on_conflict: ClassVar[int] = 0  # a concurrent request made the row: nothing of ours was written

    def run(self, schema: Schema) -> SqlGen[int]:
        c, d, a = schema.delivery_cursors, schema.dead_letters, schema.audit_events
        event = (yield select(a.c.type).where(a.c.id == self.event_id)).first()
        if event is None:
            return 0
        takes = or_(c.c.kinds.is_(None), c.c.kinds.contains(f" {event.type} ", autoescape=True))
        mark = update(d).where(d.c.event_id == self.event_id, d.c.consumer.in_(select(c.c.consumer).where(takes))
                               ).values(replay_at=self.at)
        behind = select(c.c.consumer, literal(self.event_id), literal(0), literal(self.at),
                        literal("replay requested"), literal(self.at)).where(
            c.c.last_id >= self.event_id, takes,
            ~exists().where(d.c.consumer == c.c.consumer, d.c.event_id == self.event_id))
        if self.consumer is not None:
            mark = mark.where(d.c.consumer == self.consumer)
            behind = behind.where(c.c.consumer == self.consumer)
        yield mark
        yield insert(d).from_select(["consumer", "event_id", "attempts", "failed_at", "error", "replay_at"], behind)
        # Counted, not taken from the INSERT's rowcount (PostgreSQL's driver reports -1 for it).
        due = select(func.count()).select_from(d).where(d.c.event_id == self.event_id, d.c.replay_at == self.at)
        if self.consumer is not None:
            due = due.where(d.c.consumer == self.consumer)
        return int((yield due).scalar_one())


@dataclass(frozen=True, slots=True)
class ConsumerState:
    consumer: str
    last_id: int
    attempts: int
    next_at: int
    last_error: str
    lease_owner: str
    lease_until: int
    dead_letters: int
    pending: int  # events past the cursor (of every type: the consumer may skip some)


@dataclass(frozen=True, slots=True)
class ListConsumers(RecordOp[tuple[ConsumerState, ...]]):
    writes: ClassVar[bool] = False

    def run(self, schema: Schema) -> SqlGen[tuple[ConsumerState, ...]]:
        c, d, a = schema.delivery_cursors, schema.dead_letters, schema.audit_events
        dead = select(func.count()).select_from(d).where(d.c.consumer == c.c.consumer).scalar_subquery()
        pending = select(func.count()).select_from(a).where(a.c.id > c.c.last_id).scalar_subquery()
        rows = (yield select(c, dead.label("dead"), pending.label("pending")).order_by(c.c.consumer)).all()
        return tuple(ConsumerState(r.consumer, int(r.last_id), int(r.attempts), int(r.next_at), r.last_error,
                                   r.lease_owner, int(r.lease_until), int(r.dead), int(r.pending)) for r in rows)


@dataclass(frozen=True, slots=True)
class DeadLetterEvent:
    consumer: str
    event_id: int
    type: str  # "" when the event itself was pruned by retention
    user_id: str
    attempts: int
    failed_at: int
    error: str
    replay_at: int | None


@dataclass(frozen=True, slots=True)
class ListDeadLetters(RecordOp[tuple[DeadLetterEvent, ...]]):
    consumer: str | None = None
    limit: int = 1000
    writes: ClassVar[bool] = False

    def run(self, schema: Schema) -> SqlGen[tuple[DeadLetterEvent, ...]]:
        d, a = schema.dead_letters, schema.audit_events
        query = (select(d, a.c.type, a.c.user_id).outerjoin(a, a.c.id == d.c.event_id)
                 .order_by(d.c.consumer, d.c.event_id).limit(self.limit))
        if self.consumer is not None:
            query = query.where(d.c.consumer == self.consumer)
        return tuple(DeadLetterEvent(r.consumer, int(r.event_id), r.type or "", r.user_id or "", int(r.attempts),
                                     int(r.failed_at), r.error, None if r.replay_at is None else int(r.replay_at))
                     for r in (yield query).all())

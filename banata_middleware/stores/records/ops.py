"""How a record operation is described: once, by name, with typed arguments and a typed reply.

An operation is a frozen dataclass. Its ``run(schema)`` is a generator that yields SQLAlchemy
statements and receives each one's result; the ``RecordStore`` drives it inside ONE transaction,
with ``conn.execute`` on the sync engine (WSGI, admin) or ``await conn.execute`` on the async engine
(ASGI). The SQL is therefore built in one place and runs unchanged on both engines and on every
backend; there is no hand-kept twin.

The rule for check-and-consume operations: the decision is ONE conditional statement
(``UPDATE ... WHERE <condition>``, ``DELETE ... WHERE``, an INSERT against a unique index) whose
rowcount says who won. A read after it may only *classify* a refusal (why rowcount was 0), never
decide. Audit rows are inserted in the same transaction, so an event exists exactly when its change does.

Lock order, so two operations never wait on each other in a circle: the user's totp_factors rows,
then the user's state row (``factors.totp.lock_user_factors``, which EVERY removal of a factor
takes first, so removals of one user run one after the other and each decides whether it removes
the last factor from what the others left), then the other factor tables (backup_codes, passkeys,
otp_factors), and audit_events (insert only) last. The user's own removals (``DisableSecondFactor``,
``DisableOtp``, ``RemoveAuthenticator``) and the additions a flow may undo (``ConfirmAuthenticator``,
``RegisterPasskey``) also take the user's factor-change lease (``users.take_lease``: columns of the
state row just locked), when they are about to write, and one that its request may still undo
keeps it until that is settled: one such change in flight per user. An administrator's change of
the factors clears it (``users.clear_lease``). An addition that must be seen by a removal's
decision (``AddAuthenticator``, ``EnableOtp``) locks the state row alone, then writes its table. A
deadlock the server still reports (MariaDB's gap locks, an add meeting a removal of the same user's
app) makes the store run the operation again.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from sqlalchemy import CursorResult, Executable, insert

if TYPE_CHECKING:
    from .schema import Schema

__all__ = ["AuditEntry", "Params", "RecordOp", "SqlGen", "Statement", "Status", "audit_insert"]

R = TypeVar("R")

#: Bound values for a prepared statement: one row, or several (then executed as a batch).
Params = Mapping[str, Any] | Sequence[Mapping[str, Any]]
#: What an operation yields: a statement, or a prepared one (``Schema.prepared``) with its values.
#: The hot paths use the second form: building a SQLAlchemy statement and its cache key costs
#: more CPU than running it, and a prepared one is built once per schema.
Statement = Executable | tuple[Executable, Params]
#: What ``RecordOp.run`` returns: yields statements, is sent their results, returns the reply.
SqlGen = Generator[Statement, CursorResult[Any], R]


class Status(enum.Enum):
    """Every outcome a record operation reports (each op documents the subset it uses)."""

    OK = "ok"
    CREATED = "created"
    TAKEN = "taken"  # a unique key (email, factor name, credential id) already exists
    NOT_FOUND = "not_found"
    ACCEPTED = "accepted"  # a TOTP step or a sign count moved forward
    REPLAYED = "replayed"  # the TOTP step was not newer than the last accepted one
    CHANGED = "changed"  # the row changed meanwhile (secret replaced, factor unconfirmed/confirmed)
    CONSUMED = "consumed"  # a backup code was used up by this call
    REGRESSED = "regressed"  # a passkey sign count did not increase (a cloned authenticator?)
    FULL = "full"  # a per-user cap (authenticator apps) is reached
    LOCKED = "locked"  # the account is under the permanent lock (the failure ceiling)
    BUSY = "busy"  # another change of the user's factors is in flight (its lease is live): nothing written


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit event to write with the change it records. Never a code, secret or token."""

    type: str
    at: int  # Unix ms
    ip: str = ""
    user_agent: str = ""
    session_id: str = ""  # a session's id hash, never the cookie value
    detail: Mapping[str, str] = field(default_factory=dict)


def _audit_insert(schema: Schema) -> Executable:
    return insert(schema.audit_events)


def audit_insert(schema: Schema, user_id: str, entries: Sequence[AuditEntry]) -> Statement:
    """The INSERT for ``entries`` (prepared; several entries run as one batch). A multi-row
    ``VALUES`` would be a new statement, compiled anew, at every call."""
    rows = [{"user_id": user_id, "type": e.type, "at": e.at, "ip": e.ip[:64], "user_agent": e.user_agent[:512],
             "session_id": e.session_id, "detail": json.dumps(dict(e.detail), sort_keys=True) if e.detail else None}
            for e in entries]
    return schema.prepared(_audit_insert), rows[0] if len(rows) == 1 else rows


class RecordOp(Generic[R]):
    """Base of every record operation. Subclasses are frozen dataclasses with typed fields."""

    #: False for read-only operations (SQLite then takes no write lock for them).
    writes: ClassVar[bool] = True
    #: The reply when the transaction hits a unique index (the op wrote nothing: it was rolled back).
    #: ``None``: a unique violation is unexpected for this op and fails closed like any store error.
    on_conflict: ClassVar[Any] = None

    def run(self, schema: Schema) -> SqlGen[R]:
        raise NotImplementedError

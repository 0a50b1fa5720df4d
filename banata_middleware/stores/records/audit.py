"""The audit trail: an append-only table. Rows are only inserted (normally by the operation whose
change they record, in its transaction) and deleted by age (``PruneAudit``, the retention setting)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import delete, select

from .ops import AuditEntry, RecordOp, SqlGen, audit_insert

if TYPE_CHECKING:
    from .schema import Schema

__all__ = ["AppendAudit", "AuditRecord", "ListAudit", "PruneAudit", "audit_record"]


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    user_id: str
    type: str
    at: int
    ip: str
    user_agent: str
    session_id: str
    detail: dict[str, str]


def audit_record(row: Any) -> AuditRecord:
    """An ``audit_events`` row as read by any query that selects its columns."""
    return AuditRecord(int(row.id), row.user_id, row.type, int(row.at), row.ip, row.user_agent, row.session_id,
                       json.loads(row.detail) if row.detail else {})


@dataclass(frozen=True, slots=True)
class AppendAudit(RecordOp[int]):
    """Events without a record change of their own (a failed proof, a sign-in). Replies with the count."""

    user_id: str
    entries: Sequence[AuditEntry]

    def run(self, schema: Schema) -> SqlGen[int]:
        if self.entries:
            yield audit_insert(schema, self.user_id, self.entries)
        return len(self.entries)


@dataclass(frozen=True, slots=True)
class ListAudit(RecordOp[tuple[AuditRecord, ...]]):
    """Events in insertion order after id ``after`` (0: from the start), for one user or all (``None``)."""

    user_id: str | None = None
    after: int = 0
    limit: int = 1000
    writes: ClassVar[bool] = False

    def run(self, schema: Schema) -> SqlGen[tuple[AuditRecord, ...]]:
        t = schema.audit_events
        query = select(t).where(t.c.id > self.after).order_by(t.c.id).limit(self.limit)
        if self.user_id is not None:
            query = query.where(t.c.user_id == self.user_id)
        return tuple(audit_record(r) for r in (yield query).all())


@dataclass(frozen=True, slots=True)
class PruneAudit(RecordOp[int]):
    """Retention: delete events older than ``before`` (Unix ms). Replies with the number deleted."""

    before: int

    def run(self, schema: Schema) -> SqlGen[int]:
        t = schema.audit_events
        return int((yield delete(t).where(t.c.at < self.before)).rowcount)

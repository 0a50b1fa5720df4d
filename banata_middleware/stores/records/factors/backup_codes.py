"""Backup codes: keyed hashes only (``crypto.Keyring``), single use.

A code is consumed by ONE ``DELETE ... WHERE user_id = :u AND code_hash IN (:candidates)``: the
rowcount says whether this caller used it up, so twenty concurrent callers get one success. The
candidates are the code's hash under every configured key (rotation). Portable to MariaDB, which
has ``DELETE ... RETURNING`` but no ``UPDATE ... RETURNING``: the rowcount is all we need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Column, Executable, MetaData, String, Table, bindparam, delete, func, insert, select

from ..ops import AuditEntry, RecordOp, SqlGen, Status, audit_insert
from ..types import Ident, Millis
from ..users import clear_failures

if TYPE_CHECKING:
    from ..schema import Schema

__all__ = ["BackupCodeUse", "ConsumeBackupCode", "ReplaceBackupCodes", "define_table"]


def define_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}backup_codes", metadata,
        # The primary key is the unique (user_id, code_hash) pair the consume statement relies on.
        Column("user_id", Ident(128), primary_key=True),
        Column("code_hash", Ident(128), primary_key=True),
        Column("key_id", String(16), nullable=False),
        Column("created_at", Millis, nullable=False),
    )


def _remaining(schema: Schema) -> Executable:
    t = schema.backup_codes
    return select(func.count()).select_from(t).where(t.c.user_id == bindparam("u"))


def remaining(schema: Schema, user_id: str) -> SqlGen[int]:
    return int((yield schema.prepared(_remaining), {"u": user_id}).scalar_one())


def _consume(schema: Schema) -> Executable:
    t = schema.backup_codes
    return delete(t).where(t.c.user_id == bindparam("u"), t.c.code_hash.in_(bindparam("c", expanding=True)))


@dataclass(frozen=True, slots=True)
class ReplaceBackupCodes(RecordOp[int]):
    """Replace the user's whole set (generate/regenerate) in one transaction: the old codes stop
    working exactly when the new ones start. Replies with the number of codes stored."""

    user_id: str
    code_hashes: Sequence[str]
    key_id: str
    at: int
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[int]:
        t = schema.backup_codes
        yield delete(t).where(t.c.user_id == self.user_id)
        hashes = sorted(set(self.code_hashes))
        if hashes:
            yield insert(t).values([{"user_id": self.user_id, "code_hash": h, "key_id": self.key_id,
                                     "created_at": self.at} for h in hashes])
        if self.audit:
            yield audit_insert(schema, self.user_id, self.audit)
        return len(hashes)


@dataclass(frozen=True, slots=True)
class BackupCodeUse:
    status: Status  # CONSUMED or NOT_FOUND
    remaining: int


@dataclass(frozen=True, slots=True)
class ConsumeBackupCode(RecordOp[BackupCodeUse]):
    """Use up the code whose hash is one of ``candidates``. CONSUMED for exactly one caller (the
    failure streak ends in the same transaction); NOT_FOUND for a wrong or already used code.

    ``audit`` is written when the code was used; ``audit_when_low`` too when the use leaves
    ``low_at`` codes or fewer (the "running out of backup codes" notice). The count is read in
    this transaction anyway, so the notice costs no statement of its own."""

    user_id: str
    candidates: Sequence[str]
    audit: Sequence[AuditEntry] = ()
    low_at: int = -1
    audit_when_low: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[BackupCodeUse]:
        if not self.candidates:
            return BackupCodeUse(Status.NOT_FOUND, (yield from remaining(schema, self.user_id)))
        used = (yield schema.prepared(_consume), {"u": self.user_id, "c": list(self.candidates)}).rowcount
        if used:
            yield clear_failures(schema, self.user_id)
        left = yield from remaining(schema, self.user_id)
        if used:
            rows = [*self.audit, *(self.audit_when_low if left <= self.low_at else ())]
            if rows:
                yield audit_insert(schema, self.user_id, rows)
        return BackupCodeUse(Status.CONSUMED if used else Status.NOT_FOUND, left)

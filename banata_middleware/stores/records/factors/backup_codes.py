"""Backup codes: keyed hashes only (``crypto.Keyring``), single use.

A code is consumed by ONE ``DELETE ... WHERE user_id = :u AND code_hash IN (:candidates)``: the
rowcount says whether this caller used it up, so twenty concurrent callers get one success. The
candidates are the code's hash under every configured key (rotation). Portable to MariaDB, which
has ``DELETE ... RETURNING`` but no ``UPDATE ... RETURNING``: the rowcount is all we need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BindParameter,
    Column,
    Executable,
    Label,
    MetaData,
    Row,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
)

from ..factor import Factor, Offer, delete_rows
from ..ops import AuditEntry, RecordOp, SqlGen, Statement, Status, audit_insert
from ..types import Ident, Millis
from ..users import clear_failures

if TYPE_CHECKING:
    from ..schema import Schema

__all__ = [
    "FACTOR",
    "BackupCode",
    "BackupCodeUse",
    "CodeCount",
    "ConsumeBackupCode",
    "RegenerateBackupCodes",
    "ReplaceBackupCodes",
    "RestoreBackupCodes",
    "define_table",
]


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
    code_hashes: Sequence[str] = field(repr=False)  # out of every repr, like every hash and secret
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
class BackupCode:
    """One stored code: its keyed hash (out of every repr), the id of the key, when it was made."""

    code_hash: str = field(repr=False)
    key_id: str
    created_at: int


def _codes_for_update(schema: Schema) -> Executable:
    t = schema.backup_codes
    return (select(t.c.code_hash, t.c.key_id, t.c.created_at).where(t.c.user_id == bindparam("u"))
            .order_by(t.c.code_hash).with_for_update())


def take_codes(schema: Schema, user_id: str) -> SqlGen[tuple[BackupCode, ...]]:
    """The user's codes, locked until the transaction ends (FOR UPDATE: a consume racing the change
    that deletes them waits, then finds them gone), so the set read is exactly the set deleted
    after it, and putting it back can never revive a code used meanwhile."""
    rows = (yield schema.prepared(_codes_for_update), {"u": user_id}).all()
    return tuple(BackupCode(r.code_hash, r.key_id, r.created_at) for r in rows)


def put_back_codes(schema: Schema, user_id: str, codes: Sequence[BackupCode]) -> Statement | None:
    """The INSERT that puts ``codes`` back (None when there are none)."""
    if not codes:
        return None
    return insert(schema.backup_codes).values([{"user_id": user_id, "code_hash": c.code_hash, "key_id": c.key_id,
                                                "created_at": c.created_at} for c in codes])


# -- what this factor contributes (factor.Factor) ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class CodeCount:
    """The user's part in ``LoadUser``: how many codes are left, and the key they are hashed under."""

    count: int = 0
    key_id: str = ""  # "" without codes

    def __bool__(self) -> bool:
        return self.count > 0


def _load(schema: Schema, user: BindParameter[str]) -> Sequence[Label[Any]]:
    b = schema.backup_codes
    return [select(func.count()).select_from(b).where(b.c.user_id == user).scalar_subquery().label("codes"),
            select(func.min(b.c.key_id)).where(b.c.user_id == user).scalar_subquery().label("codes_kid")]


def _read(row: Row[Any], rows: Sequence[Row[Any]]) -> CodeCount:
    return CodeCount(int(row.codes), row.codes_kid or "")


def _methods(codes: CodeCount, offer: Offer) -> Sequence[str]:
    # Codes hashed under a key no longer configured cannot match: not offered.
    return ("backup_code",) if codes and offer.code_key_known(codes.key_id) else ()


def _take(schema: Schema, user_id: str) -> SqlGen[tuple[BackupCode, ...]]:
    codes = yield from take_codes(schema, user_id)
    if codes:
        yield delete(schema.backup_codes).where(schema.backup_codes.c.user_id == user_id)
    return codes


def _put_back(schema: Schema, user_id: str, codes: tuple[BackupCode, ...]) -> SqlGen[None]:
    statement = put_back_codes(schema, user_id, codes)
    if statement is not None:
        yield statement


#: Backup codes answer a sign-in but never turn two-factor on by themselves.
FACTOR = Factor(
    "backup_codes", lambda m, prefix: {"backup_codes": define_table(m, prefix)}, _read,
    delete_rows(lambda s: s.backup_codes), load=_load, methods=_methods, take=_take, put_back=_put_back)


@dataclass(frozen=True, slots=True)
class RegenerateBackupCodes(RecordOp[tuple[BackupCode, ...]]):
    """``ReplaceBackupCodes`` that replies with the set it replaced, so that the flow can put it back
    (``RestoreBackupCodes``) when the factor-change rule, re-checked after the commit, refuses, or
    cannot be checked: the new codes are then never shown, and the old ones must keep working
    (review finding R4-3)."""

    user_id: str
    code_hashes: Sequence[str] = field(repr=False)
    key_id: str
    at: int
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[tuple[BackupCode, ...]]:
        previous = yield from take_codes(schema, self.user_id)
        yield from ReplaceBackupCodes(self.user_id, self.code_hashes, self.key_id, self.at, self.audit).run(schema)
        return previous


@dataclass(frozen=True, slots=True)
class RestoreBackupCodes(RecordOp[Status]):
    """Undo a ``RegenerateBackupCodes``: its set (``code_hashes``) goes, ``previous`` comes back.
    OK; or CHANGED when none of that set is stored any more (a later regeneration, a disable, a
    reset replaced it: that change stands, and nothing is written)."""

    user_id: str
    code_hashes: Sequence[str] = field(repr=False)
    previous: Sequence[BackupCode]
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[Status]:
        t = schema.backup_codes
        # The set's codes were never shown to anyone, so none was used: all of them are there, or
        # (replaced since) none. The DELETE's rowcount decides which.
        gone = (yield delete(t).where(t.c.user_id == self.user_id,
                                      t.c.code_hash.in_(sorted(set(self.code_hashes))))).rowcount
        if not gone:
            return Status.CHANGED
        back = put_back_codes(schema, self.user_id, self.previous)
        if back is not None:
            yield back
        if self.audit:
            yield audit_insert(schema, self.user_id, self.audit)
        return Status.OK


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
    candidates: Sequence[str] = field(repr=False)
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

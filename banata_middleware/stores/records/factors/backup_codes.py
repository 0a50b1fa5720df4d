"""Backup codes: keyed hashes only (``crypto.Keyring``), single use.

A code is consumed by ONE ``DELETE ... WHERE user_id = :u AND code_hash IN (:candidates) AND staged
IS NULL``: the rowcount says whether this caller used it up, so twenty concurrent callers get one
success. The candidates are the code's hash under every configured key (rotation). Portable to
MariaDB, which has ``DELETE ... RETURNING`` but no ``UPDATE ... RETURNING``: the rowcount is all we need.

A new set (generate-backup-codes with 2FA on) goes in in two phases, so that no crash can leave the
user with codes nobody saw: ``StageBackupCodes`` writes it beside the set in use, *staged* (the
``staged`` column holds the generation's token; 0008), where no read and no consume sees it; the
flow then re-checks the factor-change rule in the hot store, and only when that passes
``ActivateBackupCodes`` puts the staged set in use and deletes every other code of the user, in
one transaction. A crash or a refusal before it leaves the old set working and the staged rows
inert (``DiscardBackupCodes`` drops them on a refusal; the next activation, a disable, an enable
or a reset drops a crash's).
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
    or_,
    select,
    update,
)

from ..factor import Factor, Offer
from ..ops import AuditEntry, RecordOp, SqlGen, Statement, Status, audit_insert
from ..types import Ident, Millis
from ..users import any_on, clear_failures, lock_user_state

if TYPE_CHECKING:
    from ..schema import Schema

__all__ = ["FACTOR", "ActivateBackupCodes", "BackupCode", "BackupCodeUse", "CodeCount", "ConsumeBackupCode",
           "DiscardBackupCodes", "ReplaceBackupCodes", "StageBackupCodes", "define_table"]


def define_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}backup_codes", metadata,
        # The primary key is the unique (user_id, code_hash) pair the consume statement relies on.
        Column("user_id", Ident(128), primary_key=True),
        Column("code_hash", Ident(128), primary_key=True),
        Column("key_id", String(16), nullable=False),
        Column("created_at", Millis, nullable=False),
        # NULL: in use. Otherwise the token of a generation not yet activated (StageBackupCodes):
        # such a row is no code at all until ActivateBackupCodes clears it (0008).
        Column("staged", Ident(32), nullable=True),
    )


def _remaining(schema: Schema) -> Executable:
    t = schema.backup_codes
    return select(func.count()).select_from(t).where(t.c.user_id == bindparam("u"), t.c.staged.is_(None))


def remaining(schema: Schema, user_id: str) -> SqlGen[int]:
    return int((yield schema.prepared(_remaining), {"u": user_id}).scalar_one())


def _consume(schema: Schema) -> Executable:
    t = schema.backup_codes
    return delete(t).where(t.c.user_id == bindparam("u"), t.c.code_hash.in_(bindparam("c", expanding=True)),
                           t.c.staged.is_(None))


@dataclass(frozen=True, slots=True)
class ReplaceBackupCodes(RecordOp[int]):
    """Replace the user's whole set in one transaction (an enrolment's first code, an import: the
    set was shown before, or is shown after, by a request that has nothing left to check), staged
    rows too: the old codes stop working exactly when the new ones start. Replies with the number
    of codes stored."""

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
    return (select(t.c.code_hash, t.c.key_id, t.c.created_at, t.c.staged).where(t.c.user_id == bindparam("u"))
            .order_by(t.c.code_hash).with_for_update())


def take_codes(schema: Schema, user_id: str) -> SqlGen[tuple[BackupCode, ...]]:
    """The user's codes in use, locked until the transaction ends (FOR UPDATE: a consume racing the
    change that deletes them waits, then finds them gone), so the set read is exactly the set
    deleted after it, and putting it back can never revive a code used meanwhile. Staged rows are
    locked too (every change of the set locks all the user's rows in ``code_hash`` order, so two
    never wait on each other in a circle) but not returned: they are no codes."""
    rows = (yield schema.prepared(_codes_for_update), {"u": user_id}).all()
    return tuple(BackupCode(r.code_hash, r.key_id, r.created_at) for r in rows if r.staged is None)


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
    # Codes in use only: a staged set (generate-backup-codes between its two phases) is none yet.
    b = schema.backup_codes
    return [select(func.count()).select_from(b).where(b.c.user_id == user, b.c.staged.is_(None)).scalar_subquery()
            .label("codes"),
            select(func.min(b.c.key_id)).where(b.c.user_id == user, b.c.staged.is_(None)).scalar_subquery()
            .label("codes_kid")]


def _read(row: Row[Any], rows: Sequence[Row[Any]]) -> CodeCount:
    return CodeCount(int(row.codes), row.codes_kid or "")


def _methods(codes: CodeCount, offer: Offer) -> Sequence[str]:
    # Codes hashed under a key no longer configured cannot match: not offered.
    return ("backup_code",) if codes and offer.code_key_known(codes.key_id) else ()


def _take(schema: Schema, user_id: str) -> SqlGen[tuple[BackupCode, ...]]:
    """The codes in use, locked, then every code row of the user: a staged set (a generation under
    way) goes too, but is no factor, so it is neither replied nor put back."""
    codes = yield from take_codes(schema, user_id)
    yield delete(schema.backup_codes).where(schema.backup_codes.c.user_id == user_id)
    return codes


def _remove(schema: Schema, user_id: str) -> SqlGen[int]:
    """A reset: every code row goes; counted are the codes in use (read under the same locks as
    ``_take`` reads them), since a staged set is no factor."""
    return len((yield from _take(schema, user_id)))


def _put_back(schema: Schema, user_id: str, codes: tuple[BackupCode, ...]) -> SqlGen[None]:
    statement = put_back_codes(schema, user_id, codes)
    if statement is not None:
        yield statement


#: Backup codes answer a sign-in but never turn two-factor on by themselves.
FACTOR = Factor(
    "backup_codes", lambda m, prefix: {"backup_codes": define_table(m, prefix)}, _read,
    _remove, load=_load, methods=_methods, take=_take, put_back=_put_back)


@dataclass(frozen=True, slots=True)
class StageBackupCodes(RecordOp[Status]):
    """Phase one of a new set while two-factor is on: the codes are written staged under ``token``
    (random, one per generation), beside the set in use, which keeps working. No read and no
    consume sees a staged row, so a crash after this commit changes nothing the user has: the old
    codes work, and the new ones, never shown, match nothing. One INSERT. OK; or, with
    ``while_on``, CHANGED when no factor turns the user's two-factor on any more (a disable, or
    the removal of the last factor, committed after the flow read the record: R7-1), nothing
    written. That is read after the user's state row is locked (``lock_user_state``), which every
    factor removal holds while it decides (``lock_user_factors``): a removal of the last factor
    ran before this read, or runs after this commit and deletes the staged rows with the rest."""

    user_id: str
    token: str
    code_hashes: Sequence[str] = field(repr=False)  # out of every repr, like every hash and secret
    key_id: str
    at: int
    while_on: bool = False

    def run(self, schema: Schema) -> SqlGen[Status]:
        if self.while_on:
            yield from lock_user_state(schema, self.user_id)
            if not (yield any_on(schema, self.user_id)).scalar_one():  # a plain read, after the lock
                return Status.CHANGED
        hashes = sorted(set(self.code_hashes))
        if hashes:
            yield insert(schema.backup_codes).values([
                {"user_id": self.user_id, "code_hash": h, "key_id": self.key_id, "created_at": self.at,
                 "staged": self.token} for h in hashes])
        return Status.OK


@dataclass(frozen=True, slots=True)
class ActivateBackupCodes(RecordOp[Status]):
    """Phase two, once the factor-change rule passed: the set staged under ``token`` goes into use
    and every other code of the user goes (the old set, a crash's leftovers, and the staged set of
    a generation running at the same time, which then finds its own gone), with the audit rows,
    in one transaction. OK; or CHANGED when the staged set is no longer there (a disable, an
    enrolment, an import, a reset, or a generation that activated first removed it): nothing is
    written, and the codes in use stay as they are.

    The decision spans rows, so it is taken under their locks (docs/storage.md): every code row of
    the user is locked first, in ``code_hash`` order as every change of the set does (a consume
    racing it either used its code first or finds it gone), then read; the statements that follow
    act on what that read found. The staged rows existed before this transaction began (phase one
    committed), so a locked read that does not return them means they were deleted. With
    ``while_on``, CHANGED too when no factor turns two-factor on any more, read after the user's
    state row is locked (as ``StageBackupCodes``), before the code rows (the removals' order)."""

    user_id: str
    token: str
    audit: Sequence[AuditEntry] = ()
    while_on: bool = False

    def run(self, schema: Schema) -> SqlGen[Status]:
        t, u = schema.backup_codes, self.user_id
        if self.while_on:
            yield from lock_user_state(schema, u)
            if not (yield any_on(schema, u)).scalar_one():
                return Status.CHANGED
        rows = (yield schema.prepared(_codes_for_update), {"u": u}).all()
        if not any(r.staged == self.token for r in rows):
            return Status.CHANGED
        yield delete(t).where(t.c.user_id == u, or_(t.c.staged.is_(None), t.c.staged != self.token))
        yield update(t).where(t.c.user_id == u, t.c.staged == self.token).values(staged=None)
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return Status.OK


@dataclass(frozen=True, slots=True)
class DiscardBackupCodes(RecordOp[Status]):
    """Drop a staged set that will never be activated (the factor-change rule refused, or could not
    be checked). Nothing the user holds changes, so nothing is audited. OK, or NOT_FOUND (it was
    removed already: by a disable, an enrolment, a reset or another generation's activation)."""

    user_id: str
    token: str

    def run(self, schema: Schema) -> SqlGen[Status]:
        t = schema.backup_codes
        gone = (yield delete(t).where(t.c.user_id == self.user_id, t.c.staged == self.token)).rowcount
        return Status.OK if gone else Status.NOT_FOUND


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

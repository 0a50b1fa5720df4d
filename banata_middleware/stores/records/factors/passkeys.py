"""Passkeys (WebAuthn credentials): public key, sign count, transports, backup flags, name, AAGUID,
and whether the user was verified (PIN, biometric) at registration.

Credential ids can be up to 1023 bytes, longer than MariaDB can index, so the unique key is
``credential_key`` = SHA-256 of the id (hex); the id itself is kept beside it. One credential
belongs to one user (the unique key refuses a second registration). The sign count only moves
forward, by one conditional UPDATE (``sign_count < :n``, or both zero for authenticators without
a counter), so racing assertions leave it monotonic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    BindParameter,
    Boolean,
    Column,
    Executable,
    Label,
    MetaData,
    Row,
    Select,
    String,
    Table,
    Text,
    bindparam,
    delete,
    exists,
    false,
    func,
    insert,
    select,
    update,
)

from ..factor import Factor, Offer, delete_rows
from ..ops import AuditEntry, RecordOp, SqlGen, Status, audit_insert
from ..types import Ident, Millis
from ..users import LeasedChange, end_removal, lock_user_state, take_lease_while_on
from .totp import lock_user_factors

if TYPE_CHECKING:
    from ..schema import Schema

__all__ = ["FACTOR", "AddPasskey", "AdvanceSignCount", "GetPasskey", "ListPasskeys", "Passkey", "RegisterPasskey",
           "RemovePasskey", "RenamePasskey", "credential_key", "define_table"]


def define_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}passkeys", metadata,
        Column("credential_key", Ident(64), primary_key=True),
        Column("credential_id", Text, nullable=False),  # base64url
        Column("user_id", Ident(128), nullable=False, index=True),
        Column("public_key", Text, nullable=False),  # base64url COSE key
        Column("sign_count", Millis, nullable=False, server_default="0"),
        Column("transports", String(255), nullable=False, server_default=""),  # comma-separated
        Column("device_type", String(32), nullable=False, server_default=""),  # single_device | multi_device
        Column("backed_up", Boolean, nullable=False),
        Column("name", String(128), nullable=False, server_default=""),
        Column("aaguid", String(36), nullable=False, server_default=""),
        Column("created_at", Millis, nullable=False),
        Column("last_used_at", Millis, nullable=True),
        # Registered without user verification: one factor for good (it never signs in on its own),
        # even if later assertions report UV: a thief can set a PIN on a stolen key that had none.
        Column("user_verified", Boolean, nullable=False, server_default=false()),
    )


# -- what this factor contributes (factor.Factor) ---------------------------------------------------

def _load(schema: Schema, user: BindParameter[str]) -> Sequence[Label[Any]]:
    p = schema.passkeys
    return [select(func.count()).select_from(p).where(p.c.user_id == user).scalar_subquery().label("keys")]


def _read(row: Row[Any], rows: Sequence[Row[Any]]) -> int:
    return int(row.keys)


def _methods(count: int, offer: Offer) -> Sequence[str]:
    return ("passkey",) if count and offer.passkeys else ()


#: Passkeys sign in on their own (and answer a pending sign-in); disable keeps them, an
#: administrator's reset may remove them; they do not turn two-factor on.
FACTOR = Factor(
    "passkeys", lambda m, prefix: {"passkeys": define_table(m, prefix)}, _read, delete_rows(lambda s: s.passkeys),
    load=_load, methods=_methods, kept_by_disable=True)


def credential_key(credential_id: str) -> str:
    return hashlib.sha256(credential_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Passkey:
    credential_id: str
    user_id: str
    public_key: str
    sign_count: int
    transports: tuple[str, ...]
    device_type: str
    backed_up: bool
    name: str
    aaguid: str
    created_at: int
    last_used_at: int | None = None
    user_verified: bool = False  # at registration (see the column)

    @classmethod
    def from_row(cls, row: Row[Any]) -> Passkey:
        return cls(row.credential_id, row.user_id, row.public_key, row.sign_count,
                   tuple(t for t in row.transports.split(",") if t), row.device_type, bool(row.backed_up),
                   row.name, row.aaguid, row.created_at, row.last_used_at, bool(row.user_verified))


@dataclass(frozen=True, slots=True)
class AddPasskey(RecordOp[Status]):
    """Register ``passkey``. CREATED, or TAKEN when the credential is already registered (to anyone)."""

    passkey: Passkey
    audit: Sequence[AuditEntry] = ()
    on_conflict: ClassVar[Any] = Status.TAKEN

    def run(self, schema: Schema) -> SqlGen[Status]:
        p = self.passkey
        yield _insert(schema, p)
        if self.audit:
            yield audit_insert(schema, p.user_id, self.audit)
        return Status.CREATED


def _insert(schema: Schema, p: Passkey) -> Executable:
    return insert(schema.passkeys).values(
            credential_key=credential_key(p.credential_id), credential_id=p.credential_id, user_id=p.user_id,
            public_key=p.public_key, sign_count=p.sign_count, transports=",".join(p.transports),
            device_type=p.device_type, backed_up=p.backed_up, name=p.name, aaguid=p.aaguid,
            created_at=p.created_at, last_used_at=p.last_used_at, user_verified=p.user_verified)


@dataclass(frozen=True, slots=True)
class RegisterPasskey(RecordOp[LeasedChange]):
    """A passkey registration (the flow's): ``AddPasskey``, holding the user's factor-change lease
    from then on while a factor turns two-factor on, as a removal holds it: the flow re-checks the
    factor-change rule after this commit and removes the passkey when that refuses or fails
    (``RemovePasskey`` with ``lease``), and no other change of the user's factors may run in
    between (a disable's undo removes every passkey registered in its window, so a registration
    there answered 200 and was undone; and the other way round). With two-factor off it neither
    waits for nor takes the lease (``take_lease_while_on``: R10-3, R10-1): lease 0, the flow
    releases nothing. The locks every removal takes come first (``lock_user_factors``), then one statement
    decides (two-factor on, the lease free), then the row is inserted; a credential registered
    already meets the unique key, and the whole transaction, lease included, is rolled back.
    CREATED with the lease's token (0 without one); TAKEN (nothing written); BUSY while two-factor
    is on and another change's lease is live (nothing written: 409)."""

    passkey: Passkey
    at: int
    audit: Sequence[AuditEntry] = ()
    on_conflict: ClassVar[Any] = LeasedChange(Status.TAKEN)

    def run(self, schema: Schema) -> SqlGen[LeasedChange]:
        p = self.passkey
        # The locks every factor removal takes, in their order (the apps, then the state row): the
        # lease's statement reads the factors (MariaDB share-locks the rows a subquery of an UPDATE
        # reads), so taking the state row alone first would wait on a removal in a circle.
        state = yield from lock_user_factors(schema, p.user_id)
        lease = yield from take_lease_while_on(schema, p.user_id, self.at, state)
        if lease is None:
            return LeasedChange(Status.BUSY)
        yield _insert(schema, p)
        if self.audit:
            yield audit_insert(schema, p.user_id, self.audit)
        return LeasedChange(Status.CREATED, lease)


@dataclass(frozen=True, slots=True)
class GetPasskey(RecordOp["Passkey | None"]):
    """The credential with this id (passwordless sign-in starts without a user), or None."""

    credential_id: str
    writes: ClassVar[bool] = False

    def run(self, schema: Schema) -> SqlGen[Passkey | None]:
        t = schema.passkeys
        row = (yield select(t).where(t.c.credential_key == credential_key(self.credential_id))).first()
        return Passkey.from_row(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class ListPasskeys(RecordOp[tuple[Passkey, ...]]):
    """The user's passkeys, oldest first."""

    user_id: str
    writes: ClassVar[bool] = False

    def run(self, schema: Schema) -> SqlGen[tuple[Passkey, ...]]:
        t = schema.passkeys
        rows = (yield select(t).where(t.c.user_id == self.user_id)
                .order_by(t.c.created_at, t.c.credential_key)).all()
        return tuple(Passkey.from_row(r) for r in rows)


@dataclass(frozen=True, slots=True)
class AdvanceSignCount(RecordOp[Status]):
    """After a verified assertion: store ``sign_count`` if it moved forward (or both are 0: an
    authenticator without a counter) and the account is not under the permanent lock. ACCEPTED,
    REGRESSED (possible clone: refuse the sign-in), LOCKED (refuse it too: the failure ceiling
    locks every way in, a passkey's included), or NOT_FOUND when the passkey is gone or belongs to
    someone else. The lock is part of the one conditional UPDATE, so a lock that committed first
    is always seen (review finding R4-5: the hot store's copy of the lock may be missing).
    ``audit`` is written with an accepted count, ``audit_on_regress`` with a refused one (a
    suspected clone is worth a record)."""

    user_id: str
    credential_id: str
    sign_count: int
    at: int
    audit: Sequence[AuditEntry] = ()
    audit_on_regress: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[Status]:
        key = {"k": credential_key(self.credential_id), "u": self.user_id}
        # (sign_count < :n OR (sign_count = 0 AND :n = 0)), with :n known while choosing the statement
        advance = _advance_count if self.sign_count > 0 else _keep_zero_count
        moved = (yield schema.prepared(advance), {**key, "n": self.sign_count, "at": self.at}).rowcount
        if moved == 1:
            if self.audit:
                yield audit_insert(schema, self.user_id, self.audit)
            return Status.ACCEPTED
        row = (yield schema.prepared(_passkey_exists), key).first()
        if row is None:
            return Status.NOT_FOUND
        if (yield schema.prepared(_locked), {"u": self.user_id}).first() is not None:
            return Status.LOCKED
        if self.audit_on_regress:
            yield audit_insert(schema, self.user_id, self.audit_on_regress)
        return Status.REGRESSED


def _locked(schema: Schema) -> Select[Any]:
    """The user's permanent lock, if on (user_state is read after the passkey: the lock order)."""
    s = schema.user_state
    return select(s.c.locked_at).where(s.c.user_id == bindparam("u"), s.c.locked_at.is_not(None))


def _advance_count(schema: Schema) -> Executable:
    t = schema.passkeys
    return update(t).where(t.c.credential_key == bindparam("k"), t.c.user_id == bindparam("u"),
                           t.c.sign_count < bindparam("n"), ~exists(_locked(schema))
                           ).values(sign_count=bindparam("n"), last_used_at=bindparam("at"))


def _keep_zero_count(schema: Schema) -> Executable:
    t = schema.passkeys
    return update(t).where(t.c.credential_key == bindparam("k"), t.c.user_id == bindparam("u"),
                           t.c.sign_count == 0, ~exists(_locked(schema))
                           ).values(sign_count=bindparam("n"), last_used_at=bindparam("at"))


def _passkey_exists(schema: Schema) -> Executable:
    t = schema.passkeys
    return select(t.c.credential_key).where(t.c.credential_key == bindparam("k"), t.c.user_id == bindparam("u"))


@dataclass(frozen=True, slots=True)
class RemovePasskey(RecordOp[Status]):
    """OK, or NOT_FOUND (not this user's). With ``lease`` (the token ``RegisterPasskey`` replied):
    the undo of that registration, which releases the factor-change lease in the same transaction
    (after the state row's lock) and removes the passkey whether or not the lease was still its
    own: nothing another change answered rests on a passkey (none turns two-factor on), and a
    passkey signs in on its own, so one whose registration was refused must not stay."""

    user_id: str
    credential_id: str
    audit: Sequence[AuditEntry] = ()
    lease: int = 0

    def run(self, schema: Schema) -> SqlGen[Status]:
        t = schema.passkeys
        if self.lease:
            yield from lock_user_state(schema, self.user_id)
            yield from end_removal(schema, self.user_id, self.lease)
        gone = (yield delete(t).where(t.c.credential_key == credential_key(self.credential_id),
                                      t.c.user_id == self.user_id)).rowcount
        if not gone:
            return Status.NOT_FOUND
        if self.audit:
            yield audit_insert(schema, self.user_id, self.audit)
        return Status.OK


@dataclass(frozen=True, slots=True)
class RenamePasskey(RecordOp[Status]):
    """OK, or NOT_FOUND (not this user's)."""

    user_id: str
    credential_id: str
    name: str

    def run(self, schema: Schema) -> SqlGen[Status]:
        t = schema.passkeys
        done = (yield update(t).where(t.c.credential_key == credential_key(self.credential_id),
                                      t.c.user_id == self.user_id).values(name=self.name)).rowcount
        return Status.OK if done else Status.NOT_FOUND

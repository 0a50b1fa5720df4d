"""Built-in accounts (sign-up / sign-in without the app's own users): email, password hash, name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Executable, Row, bindparam, insert, select, update

from .ops import AuditEntry, RecordOp, SqlGen, Status, audit_insert

if TYPE_CHECKING:
    from .schema import Schema

__all__ = ["Account", "CreateAccount", "GetAccount", "GetAccountByEmail", "SetPassword"]


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    email: str
    # Out of every repr (logs, assertion messages and error reports print them), as in every record
    # type and operation that carries a hash or a secret.
    password_hash: str = field(repr=False)
    name: str
    created_at: int

    @classmethod
    def from_row(cls, row: Row[Any]) -> Account:
        return cls(row.id, row.email, row.password_hash, row.name, row.created_at)


@dataclass(frozen=True, slots=True)
class CreateAccount(RecordOp[Status]):
    """Sign-up. ``email`` must be canonical (the flows trim and lower-case it). CREATED, or TAKEN:
    the unique email index (or the id) decides a race between two sign-ups, never a prior read."""

    account: Account
    audit: Sequence[AuditEntry] = ()
    on_conflict: ClassVar[Any] = Status.TAKEN

    def run(self, schema: Schema) -> SqlGen[Status]:
        a = self.account
        yield insert(schema.accounts).values(id=a.id, email=a.email, password_hash=a.password_hash, name=a.name,
                                             created_at=a.created_at)
        if self.audit:
            yield audit_insert(schema, a.id, self.audit)
        return Status.CREATED


@dataclass(frozen=True, slots=True)
class GetAccount(RecordOp["Account | None"]):
    user_id: str
    writes: ClassVar[bool] = False

    def run(self, schema: Schema) -> SqlGen[Account | None]:
        t = schema.accounts
        row = (yield select(t).where(t.c.id == self.user_id)).first()
        return Account.from_row(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class GetAccountByEmail(RecordOp["Account | None"]):
    email: str  # canonical
    writes: ClassVar[bool] = False

    def run(self, schema: Schema) -> SqlGen[Account | None]:
        row = (yield schema.prepared(_by_email), {"e": self.email}).first()
        return Account.from_row(row) if row is not None else None


def _by_email(schema: Schema) -> Executable:
    t = schema.accounts
    return select(t).where(t.c.email == bindparam("e"))


@dataclass(frozen=True, slots=True)
class SetPassword(RecordOp[Status]):
    """Replace the password hash. OK, or NOT_FOUND."""

    user_id: str
    password_hash: str = field(repr=False)
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[Status]:
        t = schema.accounts
        done = (yield update(t).where(t.c.id == self.user_id).values(password_hash=self.password_hash)).rowcount
        if done and self.audit:
            yield audit_insert(schema, self.user_id, self.audit)
        return Status.OK if done else Status.NOT_FOUND

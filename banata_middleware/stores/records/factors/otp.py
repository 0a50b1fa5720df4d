"""One-time codes by message: which address (email) or number (SMS) a user receives codes at.

A row exists only once the address was confirmed (a code sent there came back, or the app vouched
for an address it verified itself: ``BanataAuth.enable_otp``); the codes themselves are short-lived
and live in the hot store (``lua/otp_issue.lua``), keyed-hashed. One row per channel: enrolling a
new address on a channel replaces the old one. The address is personal data, not a secret: it is
what the app's sender needs to reach the user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Column, MetaData, String, Table, delete, insert, select

from ..ops import AuditEntry, RecordOp, SqlGen, Status, audit_insert
from ..types import Ident, Millis
from ..users import clear_failures, ensure_user_state

if TYPE_CHECKING:
    from ..schema import Schema

__all__ = ["EnableOtp", "OtpFactor", "OtpRows", "RecordOtpUse", "RemoveOtp", "RestoreOtp", "define_table"]


def define_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}otp_factors", metadata,
        Column("user_id", Ident(128), primary_key=True),
        Column("channel", String(16), primary_key=True),  # "email" | "sms"
        Column("address", String(254), nullable=False),  # canonical email, or E.164 number
        Column("created_at", Millis, nullable=False),  # confirmed at
    )


@dataclass(frozen=True, slots=True)
class OtpFactor:
    """A confirmed address: codes by ``channel`` ("email" | "sms") go to ``address``."""

    channel: str
    address: str


@dataclass(frozen=True, slots=True)
class EnableOtp(RecordOp[Status]):
    """Codes by ``channel`` to ``address`` from now on, replacing the channel's earlier address.
    CREATED (new), OK (replaced), or TAKEN when a concurrent enrolment of the channel won (this
    one wrote nothing)."""

    user_id: str
    channel: str
    address: str
    at: int
    audit: Sequence[AuditEntry] = ()
    on_conflict: ClassVar[Any] = Status.TAKEN

    def run(self, schema: Schema) -> SqlGen[Status]:
        t, u = schema.otp_factors, self.user_id
        # Delete then insert (not an upsert: three dialects, three spellings); the primary key
        # decides two enrolments racing.
        replaced = (yield delete(t).where(t.c.user_id == u, t.c.channel == self.channel)).rowcount
        yield insert(t).values(user_id=u, channel=self.channel, address=self.address, created_at=self.at)
        yield ensure_user_state(schema, u)
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return Status.OK if replaced else Status.CREATED


#: Addresses as stored: (channel, address, created_at), what a removal replies and an undo puts back.
OtpRows = tuple[tuple[str, str, int], ...]


@dataclass(frozen=True, slots=True)
class RemoveOtp(RecordOp[OtpRows]):
    """Stop codes by ``channel`` (every channel when None). Replies with the rows removed (none:
    nothing to stop), read under the delete's row locks, so that the flow can put them back exactly
    (``RestoreOtp``) when the factor-change rule, re-checked after this commit, refuses."""

    user_id: str
    channel: str | None = None
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[OtpRows]:
        t = schema.otp_factors
        where = [t.c.user_id == self.user_id, *([t.c.channel == self.channel] if self.channel else [])]
        rows = tuple((r.channel, r.address, r.created_at) for r in (
            yield select(t.c.channel, t.c.address, t.c.created_at).where(*where).order_by(t.c.channel)
            .with_for_update()).all())
        if not rows:
            return ()
        yield delete(t).where(*where)
        if self.audit:
            yield audit_insert(schema, self.user_id, self.audit)
        return rows


@dataclass(frozen=True, slots=True)
class RestoreOtp(RecordOp[Status]):
    """Undo a ``RemoveOtp``: its rows come back as they were. OK; or TAKEN when one of those channels
    was enrolled again meanwhile (that enrolment stands: the primary key refuses the put-back, and
    nothing is written)."""

    user_id: str
    rows: OtpRows
    audit: Sequence[AuditEntry] = ()
    on_conflict: ClassVar[Any] = Status.TAKEN

    def run(self, schema: Schema) -> SqlGen[Status]:
        if self.rows:
            yield insert(schema.otp_factors).values([
                {"user_id": self.user_id, "channel": channel, "address": address, "created_at": at}
                for channel, address, at in self.rows])
        if self.audit:
            yield audit_insert(schema, self.user_id, self.audit)
        return Status.OK


@dataclass(frozen=True, slots=True)
class RecordOtpUse(RecordOp[Status]):
    """A code sent by message was accepted (the hot store used it up, atomically with the answer it
    gave): the failure streak ends and the audit rows are written. OK."""

    user_id: str
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[Status]:
        yield clear_failures(schema, self.user_id)
        if self.audit:
            yield audit_insert(schema, self.user_id, self.audit)
        return Status.OK

"""One-time codes by message: which address (email) or number (SMS) a user receives codes at.

A row exists only once the address was confirmed (a code sent there came back, or the app vouched
for an address it verified itself: ``BanataAuth.enable_otp``); the codes themselves are short-lived
and live in the hot store (``lua/otp_issue.lua``), keyed-hashed. One row per channel: enrolling a
new address on a channel replaces the old one. The address is personal data, not a secret: it is
what the app's sender needs to reach the user.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    BindParameter,
    Column,
    ColumnElement,
    Label,
    MetaData,
    Row,
    String,
    Table,
    delete,
    exists,
    insert,
    literal,
    select,
    update,
)

from ..factor import Factor, Offer, delete_rows
from ..ops import AuditEntry, RecordOp, SqlGen, Status, audit_insert
from ..types import Ident, Millis
from ..users import (
    DisabledSecondFactor,
    any_on,
    clear_failures,
    clear_lease,
    end_removal,
    lease_live,
    lock_user_state,
    others_on,
    take_lease,
    take_second_factor,
)
from .totp import lock_user_factors

if TYPE_CHECKING:
    from ..schema import Schema

__all__ = ["CHANNELS", "FACTOR", "DisableOtp", "EnableOtp", "OtpFactor", "OtpRemoval", "OtpRestore", "OtpRows",
           "RecordOtpUse", "RemoveOtp", "RestoreOtp", "define_table"]


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


#: Every channel a row may name, in the order a sign-in prefers them.
CHANNELS = ("email", "sms")


# -- what this factor contributes (factor.Factor) ---------------------------------------------------

def _load(schema: Schema, user: BindParameter[str]) -> Sequence[Label[Any]]:
    o = schema.otp_factors
    return [select(o.c.address).where(o.c.user_id == user, o.c.channel == channel).scalar_subquery()
            .label(f"otp_{channel}") for channel in CHANNELS]


def _read(row: Row[Any], rows: Sequence[Row[Any]]) -> tuple[OtpFactor, ...]:
    return tuple(OtpFactor(channel, address) for channel in CHANNELS
                 if (address := getattr(row, f"otp_{channel}")) is not None)


def _on_in_sql(schema: Schema, user_id: str) -> ColumnElement[bool]:
    o = schema.otp_factors
    return exists().where(o.c.user_id == user_id)


def _methods(addresses: tuple[OtpFactor, ...], offer: Offer) -> Sequence[str]:
    return ("otp",) if any(o.channel in offer.otp_channels for o in addresses) else ()


def _take(schema: Schema, user_id: str) -> SqlGen[tuple[tuple[str, str, int], ...]]:
    o = schema.otp_factors
    rows = (yield select(o.c.channel, o.c.address, o.c.created_at).where(o.c.user_id == user_id)
            .order_by(o.c.channel).with_for_update()).all()
    if rows:
        yield delete(o).where(o.c.user_id == user_id)
    return tuple((r.channel, r.address, r.created_at) for r in rows)


def _put_back(schema: Schema, user_id: str, rows: tuple[tuple[str, str, int], ...]) -> SqlGen[None]:
    yield insert(schema.otp_factors).values([{"user_id": user_id, "channel": channel, "address": address,
                                              "created_at": at} for channel, address, at in rows])


#: Codes by message: a confirmed address turns two-factor on by itself.
FACTOR = Factor(
    "otp", lambda m, prefix: {"otp_factors": define_table(m, prefix)}, _read, delete_rows(lambda s: s.otp_factors),
    load=_load, turns_on=bool, on_in_sql=_on_in_sql, methods=_methods, take=_take, put_back=_put_back)


@dataclass(frozen=True, slots=True)
class EnableOtp(RecordOp[Status]):
    """Codes by ``channel`` to ``address`` from now on, replacing the channel's earlier address.
    CREATED (new), OK (replaced), TAKEN when a concurrent enrolment of the channel won (this
    one wrote nothing), or, with ``while_off``, CHANGED when the user has a second factor by now
    (nothing written): an enrolment begun and confirmed under "2FA off", with the password as the
    factor-change rule, must not add a factor to a user whose 2FA went on meanwhile (R6-1). The
    user's state row is locked first (``lock_user_state``), as an import's generation update and
    every other ``EnableOtp`` lock it, and the factors are read after it: of an import and this,
    one is decided before the other. ``supersede`` (an administrator's ``enable_otp``): the
    factor-change lease is cleared in the same transaction (``clear_lease``), so that the undo of a
    user's change still in flight puts nothing back over this address (R9-3: a disable's undo
    removed it, as enrolled in its window, and put the old factors back)."""

    user_id: str
    channel: str
    address: str
    at: int
    audit: Sequence[AuditEntry] = ()
    while_off: bool = False
    supersede: bool = False
    on_conflict: ClassVar[Any] = Status.TAKEN

    def run(self, schema: Schema) -> SqlGen[Status]:
        t, u = schema.otp_factors, self.user_id
        # The state row first, as an addition of an app (AddAuthenticator) takes it: a removal
        # deciding whether it removes the last factor (DisableOtp, RemoveAuthenticator) then sees
        # this address, or ran before it; and the lock order stays the removals' (user_state, then
        # otp_factors), so the two never wait on each other in a circle.
        yield from lock_user_state(schema, u)
        if self.while_off and (yield any_on(schema, u)).scalar_one():  # read after the lock (R6-1)
            return Status.CHANGED
        # Delete then insert (not an upsert: three dialects, three spellings); the primary key
        # decides two enrolments racing. Another address replaced is a factor taken away: the
        # generation moves on, so that the hot copy, repaired from it, forgets every trusted device
        # (a browser trusted by a code sent to the old address: R11-A), whatever befalls the
        # flow's own hot step that forgets them at once.
        moved = (yield delete(t).where(t.c.user_id == u, t.c.channel == self.channel,
                                       t.c.address != self.address)).rowcount
        replaced = moved or (yield delete(t).where(t.c.user_id == u, t.c.channel == self.channel)).rowcount
        yield insert(t).values(user_id=u, channel=self.channel, address=self.address, created_at=self.at)
        if self.supersede or moved:
            s = schema.user_state
            yield update(s).where(s.c.user_id == u).values(
                **(clear_lease(schema) if self.supersede else {}),
                **({"generation": s.c.generation + 1} if moved else {}))
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return Status.OK if replaced else Status.CREATED


#: Addresses as stored: (channel, address, created_at), what a removal replies and an undo puts back.
OtpRows = tuple[tuple[str, str, int], ...]


@dataclass(frozen=True, slots=True)
class RemoveOtp(RecordOp[OtpRows]):
    """Stop codes by ``channel`` (every channel when None), whatever is left, with no undo and no
    factor-change lease (no flow uses it; the user's own removal is ``DisableOtp``, which decides whether
    it was the last factor and can be undone). Replies with the rows removed (none: nothing to stop)."""

    user_id: str
    channel: str | None = None
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[OtpRows]:
        t = schema.otp_factors
        yield from lock_user_factors(schema, self.user_id)  # as every factor removal (DisableOtp decides)
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
class OtpRestore:
    """What ``RestoreOtp`` did. ``status``: OK (the channels in ``put_back`` are back; those in
    ``kept`` were enrolled again meanwhile and stay as enrolled), TAKEN (every channel was enrolled
    again: nothing put back), or CHANGED (nothing put back: the lease is not the removal's any
    more, or no factor turns two-factor on)."""

    status: Status
    put_back: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RestoreOtp(RecordOp[OtpRestore]):
    """Undo a ``DisableOtp`` that left 2FA on: its rows come back as they were, each channel that
    is still free, and its factor-change lease ``lease`` is released, in one transaction. A
    channel enrolled again meanwhile (an enrolment needs no lease) keeps that enrolment, and the
    other channels come back all the same (R9-4: one channel enrolled again kept every other one
    from coming back, though the removal answered "nothing changed"): each row goes back by its
    own conditional INSERT (``... WHERE NOT EXISTS`` the channel), under the state lock every
    ``EnableOtp`` takes first. ``audit``: the rows to write for each channel put back. CHANGED,
    nothing put back, when the lease is not the removal's any more (an administrator's change
    cleared it, or it ran out and another change took it, which stands) or no factor turns
    two-factor on any more (a removal that took no lease turned it off: rather that than 2FA
    coming back on without backup codes or the hot store's half; R7-2)."""

    user_id: str
    rows: OtpRows
    lease: int
    audit: Mapping[str, Sequence[AuditEntry]] = field(default_factory=dict)
    on_conflict: ClassVar[Any] = OtpRestore(Status.TAKEN)

    def run(self, schema: Schema) -> SqlGen[OtpRestore]:
        t, u = schema.otp_factors, self.user_id
        # The state row first, as every addition (EnableOtp): a removal deciding whether it removes
        # the last factor then sees these rows, or ran before them.
        yield from lock_user_state(schema, u)
        if not (yield from end_removal(schema, u, self.lease)):
            return OtpRestore(Status.CHANGED)
        if not (yield any_on(schema, u)).scalar_one():  # a plain read, after the lock
            return OtpRestore(Status.CHANGED)
        for channel, address, at in self.rows:
            # One statement decides for each channel: back unless enrolled again meanwhile.
            row = select(literal(u, t.c.user_id.type), literal(channel, t.c.channel.type),
                         literal(address, t.c.address.type), literal(at, t.c.created_at.type)).where(
                ~exists().where(t.c.user_id == u, t.c.channel == channel))
            yield insert(t).from_select(["user_id", "channel", "address", "created_at"], row)
        # Which came back, read after (an INSERT ... SELECT's rowcount is -1 with PostgreSQL's
        # driver): a channel whose row is the removed one, address and time, is back.
        channels = [channel for channel, _, _ in self.rows]
        now = {(r.channel, r.address, r.created_at) for r in (
            yield select(t.c.channel, t.c.address, t.c.created_at).where(t.c.user_id == u,
                                                                         t.c.channel.in_(channels))).all()}
        put_back = [channel for channel, address, at in self.rows if (channel, address, at) in now]
        kept = [channel for channel in channels if channel not in put_back]
        entries = [e for channel in put_back for e in self.audit.get(channel, ())]
        if entries:
            yield audit_insert(schema, u, entries)
        if self.rows and not put_back:
            return OtpRestore(Status.TAKEN, (), tuple(kept))
        return OtpRestore(Status.OK, tuple(put_back), tuple(kept))


@dataclass(frozen=True, slots=True)
class OtpRemoval:
    status: Status  # OK, NOT_FOUND (no address on that channel, or none at all), or BUSY (another removal in flight)
    two_factor_off: bool  # it was the user's last second factor: two-factor is off now
    #: Then, what went with it (``DisableSecondFactor``'s reply), for ``RestoreSecondFactor``.
    removed: DisabledSecondFactor | None = None
    #: Otherwise, the addresses removed, for ``RestoreOtp``.
    gone: OtpRows = ()
    #: The token of the factor-change lease it holds (``users.take_lease``; also ``removed.lease``):
    #: 0 when not OK.
    lease: int = 0


@dataclass(frozen=True, slots=True)
class DisableOtp(RecordOp[OtpRemoval]):
    """The user stops codes by ``channel`` (every channel when None). Whether that removes the
    user's last second factor is decided HERE, under the locks every factor removal takes
    (``lock_user_factors``: the authenticator rows, then the state row), never from a record read
    before: a removal of the last authenticator app at the same time (``RemoveAuthenticator``)
    waits for this one, or this one for it, and the second of them sees what the first left. The
    last one: two-factor goes with it, as ``disable`` turns it off (``take_second_factor``: every
    factor row and backup code, the lock lifted; what it removed is replied, for an undo), with
    ``audit_off``; otherwise only the addresses go, with ``audit``, and are replied (``gone``), so
    that the flow can put them back (``RestoreOtp``) when the factor-change rule, re-checked after
    this commit, refuses. Either way the removal holds the user's factor-change lease (``lease``)
    until the flow settles it; while another change holds it, BUSY and nothing written; and a
    removal of nothing (NOT_FOUND) writes nothing, the lease neither (R9-5)."""

    user_id: str
    channel: str | None
    at: int
    audit: Sequence[AuditEntry] = ()
    audit_off: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[OtpRemoval]:
        t, u = schema.otp_factors, self.user_id
        state = yield from lock_user_factors(schema, u)
        if lease_live(state, self.at):  # read under the lock: nothing is written, the lease neither
            return OtpRemoval(Status.BUSY, False)
        rows = (yield select(t.c.channel, t.c.address, t.c.created_at).where(t.c.user_id == u)
                .order_by(t.c.channel).with_for_update()).all()
        going = tuple((r.channel, r.address, r.created_at) for r in rows if self.channel in (None, r.channel))
        if not going:  # nothing to remove: nothing written (R9-5)
            return OtpRemoval(Status.NOT_FOUND, False)
        last = len(going) == len(rows) and not (yield others_on(schema, u, but=FACTOR.name)).scalar_one()
        # Something is removed: the lease decides (one conditional UPDATE), held until the flow
        # settles this removal (either outcome may be undone).
        lease = yield from take_lease(schema, u, self.at, state, forget_devices=True)
        if lease is None:
            return OtpRemoval(Status.BUSY, False)
        if last:
            removed = yield from take_second_factor(schema, u, lease, self.audit_off)
            return OtpRemoval(Status.OK, True, removed, lease=lease)
        yield delete(t).where(t.c.user_id == u, t.c.channel.in_([channel for channel, _, _ in going]))
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return OtpRemoval(Status.OK, False, gone=going, lease=lease)


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

"""TOTP authenticators: one row per app, so a user can have several named ones.

The secret is stored encrypted (``crypto.Keyring``: ciphertext + the id of the key that made it).
``last_step`` is the replay guard (django-otp's ``last_t``), one per authenticator: a step is
accepted by ONE conditional UPDATE that only matches while that authenticator's stored step is
older, so it holds across processes, across a Redis flush and under any number of concurrent callers.

Changes that decide from more than one row of a user (adding one under the per-user cap, removing
one and finding whether any is left) take the user's locks first (django-otp's
``select_for_update``), so two of them never decide from the same rows at once: a removal locks the
user's authenticator rows, then the user's state row (``users.lock_user_state``); an addition,
which only inserts (and drops unfinished rows by their key), locks the state row alone. Either way
the rows decided from are read by a LATER statement: on PostgreSQL a statement that waited for a
lock still sees the snapshot it started with, so a row committed meanwhile is seen only by the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    Column,
    ColumnElement,
    Executable,
    MetaData,
    Row,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)

from ..factor import Factor, Joined, delete_rows
from ..ops import AuditEntry, RecordOp, SqlGen, Status, audit_insert
from ..types import Ident, Millis
from ..users import (
    LeasedChange,
    any_on,
    clear_failures,
    clear_lease,
    end_removal,
    ensure_user_state,
    lease_live,
    lock_user_state,
    on_condition,
    others_on,
    take_lease,
    take_second_factor,
)
from .backup_codes import ReplaceBackupCodes

if TYPE_CHECKING:
    from ..schema import Schema
    from ..users import DisabledSecondFactor

__all__ = ["DEFAULT_NAME", "FACTOR", "AcceptAnyTotpStep", "AcceptTotpStep", "AddAuthenticator",
           "AuthenticatorRemoval", "ConfirmAuthenticator", "EnableTotp", "ListTotpSecrets", "RemoveAuthenticator",
           "RemoveTotpFactor", "RenameTotpFactor", "RewrapTotpSecret", "TotpCandidate", "TotpFactor", "define_table",
           "lock_user_factors"]

#: The name of the authenticator a first enrolment (or an import) makes; the user may rename it.
DEFAULT_NAME = "Authenticator"


def define_table(metadata: MetaData, prefix: str) -> Table:
    return Table(
        f"{prefix}totp_factors", metadata,
        # The id is the user's own (e.g. "totp", "totp-2"): the key is (user_id, id), which also
        # serves every per-user lookup.
        Column("user_id", Ident(128), primary_key=True),
        Column("id", Ident(64), primary_key=True),
        Column("name", String(64), nullable=False, server_default=""),
        Column("secret", Ident(512), nullable=False),  # AES-GCM ciphertext, base64url
        Column("key_id", String(16), nullable=False),
        Column("created_at", Millis, nullable=False),
        Column("confirmed_at", Millis, nullable=True),  # NULL: enrolment started, first code not yet seen
        Column("last_step", Millis, nullable=False, server_default="0"),
        Column("last_used_at", Millis, nullable=True),  # the last accepted code (0007); NULL: never used
        UniqueConstraint("user_id", "name", name=f"{prefix}totp_factors_user_name_key"),
    )


@dataclass(frozen=True, slots=True)
class TotpFactor:
    id: str
    user_id: str
    name: str
    secret: str = field(repr=False)  # ciphertext; out of every repr, like every hash and secret
    key_id: str
    created_at: int
    confirmed_at: int | None
    last_step: int
    last_used_at: int | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> TotpFactor:
        return cls(row.id, row.user_id, row.name, row.secret, row.key_id, row.created_at, row.confirmed_at,
                   row.last_step, row.last_used_at)


# -- what this factor contributes (factor.Factor) ---------------------------------------------------

def _read(row: Row[Any], rows: Sequence[Row[Any]]) -> tuple[TotpFactor, ...]:
    return tuple(TotpFactor.from_row(r) for r in rows if r.id is not None)


def _turns_on(apps: tuple[TotpFactor, ...]) -> bool:
    """A confirmed app turns two-factor on; one being set up (unconfirmed) does not."""
    return any(f.confirmed_at is not None for f in apps)


def _on_in_sql(schema: Schema, user_id: str) -> ColumnElement[bool]:
    t = schema.totp_factors
    return exists().where(t.c.user_id == user_id, t.c.confirmed_at.is_not(None))


def _methods(apps: tuple[TotpFactor, ...], offer: Any) -> Sequence[str]:
    return ("totp",) if _turns_on(apps) else ()


def _take(schema: Schema, user_id: str) -> SqlGen[tuple[TotpFactor, ...]]:
    t = schema.totp_factors
    rows = (yield select(t).where(t.c.user_id == user_id).order_by(t.c.id).with_for_update()).all()
    if rows:
        yield delete(t).where(t.c.user_id == user_id)
    return tuple(TotpFactor.from_row(r) for r in rows)


def _put_back(schema: Schema, user_id: str, apps: tuple[TotpFactor, ...]) -> SqlGen[None]:
    yield insert(schema.totp_factors).values([
        {"user_id": user_id, "id": f.id, "name": f.name, "secret": f.secret, "key_id": f.key_id,
         "created_at": f.created_at, "confirmed_at": f.confirmed_at, "last_step": f.last_step,
         "last_used_at": f.last_used_at} for f in apps])


#: The authenticator apps: their rows are the ones ``LoadUser`` returns one by one.
FACTOR = Factor(
    "totp", lambda m, prefix: {"totp_factors": define_table(m, prefix)}, _read,
    delete_rows(lambda s: s.totp_factors),
    joined=Joined(lambda s: s.totp_factors, lambda s: (s.totp_factors.c.created_at, s.totp_factors.c.id)),
    turns_on=_turns_on, on_in_sql=_on_in_sql, methods=_methods, take=_take, put_back=_put_back)


def lock_user_factors(schema: Schema, user_id: str) -> SqlGen[Row[Any]]:
    """The locks EVERY factor removal takes first, in this order: the user's TOTP rows, then the
    user's state row (``lock_user_state``), until the transaction ends (SQLite: its writers are
    one at a time already, ``BEGIN IMMEDIATE``). Two removals of one user therefore run one after
    the other, and each decides whether it removes the last factor from what the other left
    (read by statements after the locks). An addition (``AddAuthenticator``) locks the state
    row alone, so it too is decided before or after a removal. Replies the state row's lease
    columns as locked (``lock_user_state``)."""
    t = schema.totp_factors
    yield select(t.c.id).where(t.c.user_id == user_id).with_for_update()
    return (yield from lock_user_state(schema, user_id))


def _factor_state(schema: Schema) -> Executable:
    t = schema.totp_factors
    return select(t.c.secret, t.c.confirmed_at).where(t.c.user_id == bindparam("u"), t.c.id == bindparam("f"))


def _classify(schema: Schema, user_id: str, factor_id: str, secret: str) -> SqlGen[Status]:
    """Why a conditional update on a factor matched nothing (classifies; never decides)."""
    row = (yield schema.prepared(_factor_state), {"u": user_id, "f": factor_id}).first()
    if row is None:
        return Status.NOT_FOUND
    return Status.CHANGED if row.secret != secret or row.confirmed_at is None else Status.REPLAYED


def _confirm(schema: Schema) -> Executable:
    t = schema.totp_factors
    return update(t).where(
        t.c.user_id == bindparam("u"), t.c.id == bindparam("f"), t.c.secret == bindparam("s"),
        t.c.confirmed_at.is_(None),
    ).values(confirmed_at=bindparam("at"), last_step=bindparam("step"), last_used_at=bindparam("at"))


@dataclass(frozen=True, slots=True)
class ConfirmAuthenticator(RecordOp[LeasedChange]):
    """Confirm an app added while two-factor is on (``AddAuthenticator``) with its first code's
    ``step``, holding the user's factor-change lease from then on, as a removal holds it: the flow
    re-checks the factor-change rule after this commit and undoes the confirmation when that
    refuses or fails (``RemoveTotpFactor`` with ``lease``), and no other change of the user's
    factors may run in between (R9-1: a removal the confirmed app kept from being the last went
    through in that window, and the undo then removed the user's last factor; R9-2: a disable's
    undo put the app back, confirmed, after its own undo). Under the locks every factor removal
    takes (``lock_user_factors``), the lease is taken by a statement that also asks for the app,
    unconfirmed, with this secret (a confirmation of nothing writes nothing, the lease neither:
    R9-5), then the app is confirmed by its conditional UPDATE. ACCEPTED with the
    lease's token; CHANGED (already confirmed, or its secret replaced) or NOT_FOUND (gone), with
    nothing written; BUSY while another change's lease is live (nothing written: 409)."""

    user_id: str
    factor_id: str
    secret: str = field(repr=False)
    step: int
    at: int
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[LeasedChange]:
        t, u, f = schema.totp_factors, self.user_id, self.factor_id
        state = yield from lock_user_factors(schema, u)
        # One statement decides: the lease is free and the app is there to confirm.
        confirmable = exists().where(t.c.user_id == u, t.c.id == f, t.c.secret == self.secret,
                                     t.c.confirmed_at.is_(None))
        lease = yield from take_lease(schema, u, self.at, state, only_if=confirmable)
        if lease is None:  # why (a read that explains, never decides)
            if lease_live(state, self.at):
                return LeasedChange(Status.BUSY)
            status = yield from _classify(schema, u, f, self.secret)
            return LeasedChange(Status.CHANGED if status is Status.REPLAYED else status)
        # Under the locks taken above the app is as the lease's statement saw it: this matches.
        yield schema.prepared(_confirm), {"u": u, "f": f, "s": self.secret, "at": self.at, "step": self.step}
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return LeasedChange(Status.ACCEPTED, lease)


@dataclass(frozen=True, slots=True)
class EnableTotp(RecordOp[Status]):
    """Turn two-factor on in one transaction: a CONFIRMED factor whose ``last_step`` is the step of
    the code that confirmed it (so that code cannot be used again) and the backup codes, replacing
    any earlier set. CREATED, or TAKEN when a factor of that id exists already (a concurrent
    enrolment won; this one wrote nothing). ``replace``: every earlier factor goes first (an
    administrator's import of a known secret), and the generation moves on: a device trusted under
    the replaced secret must ask for the new one, even when the hot store's half of the import
    fails (the copy's repair compares the generation, ``user_fill.lua``: R4-10); and the
    factor-change lease is cleared (``clear_lease``), after the locks every removal takes, so that
    the undo of a user's change still in flight puts nothing back over the import (R9-3: a
    disable's undo removed the imported app and codes and put the old ones back). The failure streak
    ends (the permanent lock stays). ``while_off`` (an enrolment, begun and confirmed under "2FA
    off" with the password as the factor-change rule): CHANGED, nothing written, when any factor
    turns 2FA on by now (an app's ``enable_otp``, an enrolment in codes by message), read after
    the user's state row is locked, as every ``EnableOtp`` locks it (R6-1, the other way round)."""

    user_id: str
    factor_id: str
    secret: str = field(repr=False)
    key_id: str
    at: int
    step: int
    code_hashes: Sequence[str] = field(repr=False)
    codes_key_id: str
    replace: bool = False
    audit: Sequence[AuditEntry] = ()
    name: str = DEFAULT_NAME
    while_off: bool = False
    on_conflict: ClassVar[Any] = Status.TAKEN

    def run(self, schema: Schema) -> SqlGen[Status]:
        t, u = schema.totp_factors, self.user_id
        if self.replace:  # as every removal: the user's apps, then the state row
            yield from lock_user_factors(schema, u)
        if self.while_off:
            yield from lock_user_state(schema, u)
            if (yield any_on(schema, u)).scalar_one():
                return Status.CHANGED
        # Without ``replace`` the INSERT alone decides: a factor of that id makes it meet the primary
        # key (TAKEN, the whole transaction undone). No DELETE first: on MariaDB its gap lock would
        # turn racing enrolments into deadlocks.
        if self.replace:
            yield delete(t).where(t.c.user_id == u)
        yield insert(t).values(id=self.factor_id, user_id=u, name=self.name, secret=self.secret, key_id=self.key_id,
                               created_at=self.at, confirmed_at=self.at, last_step=self.step,
                               last_used_at=self.at if self.step else None)
        yield from ReplaceBackupCodes(u, self.code_hashes, self.codes_key_id, self.at).run(schema)
        yield ensure_user_state(schema, u)
        # The new factor's first code was proven (or an administrator set it): a streak from before
        # (enrolment typos counted by earlier versions, R4-8) ends; a permanent lock stays.
        yield clear_failures(schema, u)
        if self.replace:
            state = schema.user_state
            yield update(state).where(state.c.user_id == u).values(generation=state.c.generation + 1,
                                                                   **clear_lease(schema))
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return Status.CREATED


@dataclass(frozen=True, slots=True)
class ListTotpSecrets(RecordOp[tuple[TotpFactor, ...]]):
    """Key rotation: up to ``limit`` factors whose secret is not under ``key_id``, in (user, id)
    order after ``after`` (a (user_id, factor_id) pair; ``("", "")`` from the start)."""

    key_id: str
    after: tuple[str, str] = ("", "")
    limit: int = 500
    writes: ClassVar[bool] = False

    def run(self, schema: Schema) -> SqlGen[tuple[TotpFactor, ...]]:
        t = schema.totp_factors
        user, factor = self.after
        rows = (yield select(t).where(t.c.key_id != self.key_id,
                                      (t.c.user_id > user) | ((t.c.user_id == user) & (t.c.id > factor)))
                .order_by(t.c.user_id, t.c.id).limit(self.limit)).all()
        return tuple(TotpFactor.from_row(r) for r in rows)


@dataclass(frozen=True, slots=True)
class AcceptTotpStep(RecordOp[Status]):
    """The replay guard: accept time step ``step`` of a confirmed factor whose secret is still
    ``secret``. ACCEPTED for exactly one caller per step (and only for a step newer than every
    accepted one); REPLAYED otherwise; CHANGED when the secret was replaced or the factor is not
    confirmed; NOT_FOUND when it was removed (disable racing verify). Accepting also ends the
    failure streak, in the same transaction, and stamps ``last_used_at`` with ``at`` (0: left NULL)."""

    user_id: str
    factor_id: str
    secret: str = field(repr=False)
    step: int
    audit: Sequence[AuditEntry] = ()
    at: int = 0

    def run(self, schema: Schema) -> SqlGen[Status]:
        won = (yield schema.prepared(_accept_step), {"u": self.user_id, "f": self.factor_id, "s": self.secret,
                                                     "step": self.step, "at": self.at or None}).rowcount
        if won != 1:
            return (yield from _classify(schema, self.user_id, self.factor_id, self.secret))
        yield clear_failures(schema, self.user_id)
        if self.audit:
            yield audit_insert(schema, self.user_id, self.audit)
        return Status.ACCEPTED


def _accept_step(schema: Schema) -> Executable:
    t = schema.totp_factors
    return update(t).where(
        t.c.user_id == bindparam("u"), t.c.id == bindparam("f"), t.c.secret == bindparam("s"),
        t.c.confirmed_at.is_not(None), t.c.last_step < bindparam("step"),
    ).values(last_step=bindparam("step"), last_used_at=bindparam("at"))


@dataclass(frozen=True, slots=True)
class TotpCandidate:
    """An authenticator whose code matched: its id, its secret's ciphertext as read, the step."""

    factor_id: str
    secret: str = field(repr=False)  # ciphertext, as TotpFactor's
    step: int


#: How a refusal of several candidates is reported: the first of these any candidate gave.
_REFUSALS = (Status.REPLAYED, Status.CHANGED, Status.NOT_FOUND)


@dataclass(frozen=True, slots=True)
class AcceptAnyTotpStep(RecordOp[Status]):
    """A code checked against each of the user's authenticators: ``AcceptTotpStep`` for each
    authenticator whose code matched, in order, until one accepts (each has its own secret, so
    more than one matches only by a one-in-a-million coincidence). ACCEPTED, or the refusal:
    REPLAYED when any candidate was replayed (a wrong guess), else CHANGED or NOT_FOUND (the
    authenticator was replaced or removed meanwhile). One transaction, whatever the number."""

    user_id: str
    candidates: Sequence[TotpCandidate]
    at: int
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[Status]:
        refusals: set[Status] = set()
        for c in self.candidates:
            status = yield from AcceptTotpStep(self.user_id, c.factor_id, c.secret, c.step, self.audit,
                                               self.at).run(schema)
            if status is Status.ACCEPTED:
                return status
            refusals.add(status)
        return next((s for s in _REFUSALS if s in refusals), Status.NOT_FOUND)


@dataclass(frozen=True, slots=True)
class AddAuthenticator(RecordOp[Status]):
    """Add an authenticator app to a user whose two-factor is on (a confirmed app, or codes by
    message: such a user's first app is added here too): an unconfirmed factor named
    ``name``, confirmed later by ``ConfirmAuthenticator`` with its first code. In the same
    transaction, the user's unconfirmed factors created before ``stale_before`` (setups never
    finished) and an unconfirmed one of the same name (the user asked for a new QR code) go.

    CREATED; CHANGED when the user has no factor (two-factor is off, or was turned off
    meanwhile: the first app is set up with its backup codes, ``EnableTotp``); FULL when the user
    has ``limit`` factors, confirmed or not; TAKEN when a confirmed factor has that name (or a
    concurrent add of that name won the unique index). The checks are read after the user's state
    row is locked (``lock_user_state``), so two adds at once, or an add and a removal, are decided
    one after the other."""

    user_id: str
    factor_id: str
    secret: str
    key_id: str
    at: int
    name: str
    limit: int
    stale_before: int
    on_conflict: ClassVar[Any] = Status.TAKEN

    def run(self, schema: Schema) -> SqlGen[Status]:
        t, u = schema.totp_factors, self.user_id
        yield from lock_user_state(schema, u)
        # A plain read (no range lock: see lock_user_state), after the lock: on MariaDB the first
        # plain read of a transaction takes its snapshot, on PostgreSQL each statement does.
        rows = (yield select(t.c.id, t.c.name, t.c.confirmed_at, t.c.created_at).where(t.c.user_id == u)).all()
        # Two-factor is on (a confirmed app, or another factor: a user whose only factor is codes
        # by message adds a first app here); otherwise a first setup has its backup codes (EnableTotp).
        if not any(r.confirmed_at is not None for r in rows) and not (yield any_on(schema, u)).scalar_one():
            return Status.CHANGED
        # Names compare without case (MySQL's default collation does, so every backend agrees).
        name = self.name.casefold()
        if any(r.confirmed_at is not None and r.name.casefold() == name for r in rows):
            return Status.TAKEN
        replaced = [r.id for r in rows if r.confirmed_at is None
                    and (r.created_at < self.stale_before or r.name.casefold() == name)]
        if len(rows) - len(replaced) >= self.limit:
            return Status.FULL
        if replaced:
            yield delete(t).where(t.c.user_id == u, t.c.id.in_(replaced))
        yield insert(t).values(id=self.factor_id, user_id=u, name=self.name, secret=self.secret,
                               key_id=self.key_id, created_at=self.at, confirmed_at=None, last_step=0)
        return Status.CREATED


@dataclass(frozen=True, slots=True)
class RemoveTotpFactor(RecordOp[Status]):
    """Remove one authenticator. OK, or NOT_FOUND.

    With ``lease`` (the token ``ConfirmAuthenticator`` replied): the undo of that confirmation,
    which releases the factor-change lease in the same transaction, after the locks every removal
    takes. The app goes while the lease was its own (no other change of the user's factors could
    run since); when it is not any more (it ran out and another change took it, or an
    administrator's change cleared it), the app goes only if another factor still turns two-factor
    on, and stays otherwise (CHANGED, nothing written): a change made since may have counted on
    it, as a removal it kept from being the last did (R9-1), and two-factor must not go off unsaid."""

    user_id: str
    factor_id: str
    audit: Sequence[AuditEntry] = ()
    lease: int = 0

    def run(self, schema: Schema) -> SqlGen[Status]:
        t, u, f = schema.totp_factors, self.user_id, self.factor_id
        if self.lease:
            yield from lock_user_factors(schema, u)
            own = yield from end_removal(schema, u, self.lease)
            others = or_(exists().where(t.c.user_id == u, t.c.id != f, t.c.confirmed_at.is_not(None)),
                         on_condition(schema, u, but=FACTOR.name))
            if not own and not (yield select(others)).scalar_one():  # read under the locks
                there = (yield select(t.c.id).where(t.c.user_id == u, t.c.id == f)).first()
                return Status.CHANGED if there is not None else Status.NOT_FOUND
        gone = (yield delete(t).where(t.c.user_id == u, t.c.id == f)).rowcount
        if not gone:
            return Status.NOT_FOUND
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return Status.OK


@dataclass(frozen=True, slots=True)
class AuthenticatorRemoval:
    #: OK, NOT_FOUND (no such authenticator of this user), CHANGED (the last, not may_turn_off), or
    #: BUSY (another removal of the user's factors is in flight)
    status: Status
    two_factor_off: bool  # it was the user's last second factor: two-factor is off now
    #: Then, what went with it (``DisableSecondFactor``'s reply, holding the factor-change lease), for
    #: ``RestoreSecondFactor``.
    removed: DisabledSecondFactor | None = None


@dataclass(frozen=True, slots=True)
class RemoveAuthenticator(RecordOp[AuthenticatorRemoval]):
    """The user removes one authenticator app. When it was the user's last second factor (no other
    confirmed app, and no other factor turns two-factor on: ``users.others_on``), two-factor
    authentication goes with it, as ``disable`` does (``take_second_factor``: every factor row
    and backup code, the lock lifted; sessions kept; what it removed is replied, for an undo),
    and ``audit_off`` is written too. The user's
    authenticator rows and state row are locked first, so of two removals at once exactly one sees
    itself remove the last, an app added at the same time is decided before or after it, and a
    verification racing it finds its authenticator gone (NOT_FOUND) or was first. Without
    ``may_turn_off`` (the caller gave no password, which turning 2FA off needs: R6-4), removing
    the last factor is refused here, under those locks: CHANGED, nothing removed (a concurrent
    removal left this app the last since the caller's record was read). Like every removal the
    user asks for it takes the factor-change lease (BUSY, nothing removed, while another change's
    is live, whose undo could otherwise put back over this one), only when it removes the app
    (R9-5: a removal of nothing writes nothing), and keeps it only when it turned two-factor off,
    the one outcome its flow may undo (``removed.lease``)."""

    user_id: str
    factor_id: str
    at: int
    audit: Sequence[AuditEntry] = ()
    audit_off: Sequence[AuditEntry] = ()
    may_turn_off: bool = True

    def run(self, schema: Schema) -> SqlGen[AuthenticatorRemoval]:
        t, u = schema.totp_factors, self.user_id
        state = yield from lock_user_factors(schema, u)
        if lease_live(state, self.at):  # read under the lock: nothing is written, the lease neither
            return AuthenticatorRemoval(Status.BUSY, False)
        rows = (yield select(t.c.id, t.c.confirmed_at).where(t.c.user_id == u).with_for_update()).all()
        target = next((r for r in rows if r.id == self.factor_id), None)
        if target is None:
            return AuthenticatorRemoval(Status.NOT_FOUND, False)
        last = target.confirmed_at is not None and not any(
            r.confirmed_at is not None for r in rows if r.id != self.factor_id) and not (
            yield others_on(schema, u, but=FACTOR.name)).scalar_one()
        if last and not self.may_turn_off:
            return AuthenticatorRemoval(Status.CHANGED, False)
        # Something is removed: the lease decides (one conditional UPDATE), held only by a removal
        # its request may undo (the last app: two-factor goes with it).
        lease = yield from take_lease(schema, u, self.at, state, hold=last,
                                      forget_devices=target.confirmed_at is not None)
        if lease is None:
            return AuthenticatorRemoval(Status.BUSY, False)
        if last:
            # Two-factor goes with its last authenticator, so nothing of it may remain: the
            # unfinished setups and the backup codes too, as ``disable`` removes them.
            removed = yield from take_second_factor(schema, u, lease, (*self.audit, *self.audit_off))
            return AuthenticatorRemoval(Status.OK, True, removed)
        yield delete(t).where(t.c.user_id == u, t.c.id == self.factor_id)
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return AuthenticatorRemoval(Status.OK, False)


@dataclass(frozen=True, slots=True)
class RenameTotpFactor(RecordOp[Status]):
    """OK; NOT_FOUND (not this user's); TAKEN (another of the user's authenticators has that name)."""

    user_id: str
    factor_id: str
    name: str
    on_conflict: ClassVar[Any] = Status.TAKEN

    def run(self, schema: Schema) -> SqlGen[Status]:
        t = schema.totp_factors
        done = (yield update(t).where(t.c.user_id == self.user_id, t.c.id == self.factor_id)
                .values(name=self.name)).rowcount
        return Status.OK if done else Status.NOT_FOUND


@dataclass(frozen=True, slots=True)
class RewrapTotpSecret(RecordOp[Status]):
    """Key rotation: replace ciphertext ``old_secret`` by ``new_secret`` (same plaintext, newest key).
    OK, or CHANGED when the factor was re-enrolled or removed meanwhile (left as is)."""

    user_id: str
    factor_id: str
    old_secret: str = field(repr=False)
    new_secret: str = field(repr=False)
    new_key_id: str

    def run(self, schema: Schema) -> SqlGen[Status]:
        t = schema.totp_factors
        done = (yield update(t).where(t.c.user_id == self.user_id, t.c.id == self.factor_id,
                                      t.c.secret == self.old_secret)
                .values(secret=self.new_secret, key_id=self.new_key_id)).rowcount
        return Status.OK if done == 1 else Status.CHANGED

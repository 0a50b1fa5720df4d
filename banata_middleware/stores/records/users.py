"""Per-user state that must outlive Redis: the permanent lock and the session generation, and the
one read the second-factor flows start from (``LoadUser``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Executable,
    Label,
    Row,
    bindparam,
    case,
    delete,
    exists,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .ops import AuditEntry, RecordOp, SqlGen, Statement, Status, audit_insert

if TYPE_CHECKING:
    from .accounts import Account
    from .factors.backup_codes import BackupCode, CodeCount
    from .factors.otp import OtpFactor
    from .factors.totp import TotpFactor
    from .schema import Schema

__all__ = ["REMOVAL_LEASE_MS", "DisableSecondFactor", "DisabledSecondFactor", "EndRemoval", "FailureCount",
           "LeasedChange", "LoadUser", "RecordFailure", "RemoveSecondFactor", "RestoreSecondFactor", "RevokeSessions",
           "Unlock", "UserRecord", "any_on", "clear_failures", "clear_lease", "end_removal", "ensure_user_state",
           "lease_live", "lock_user_state", "on_condition", "others_on", "take_lease", "take_lease_while_on",
           "take_second_factor", "takeable"]

#: How long a change of a user's factors that its request may still undo holds the user's
#: factor-change lease at most (Unix ms in ``user_state.removing_until``; named when only removals
#: held it). Sized against the sum of the documented timeouts from the moment ``at`` is read (by the
#: flow, before the change's transaction) to the settled undo, about 88 s: before the commit,
#: SQLAlchemy's pool wait (30 s), a connect (5 s) and SQLite's busy timeout (5 s); after it, the hot
#: re-check (``RedisStore.from_url``'s ``timeout``, 1 s, for the pool, the connection and the reply,
#: with one retry on a broken connection and at most an eviction-policy check and a script reload:
#: 8 s in all); then the undo's own pool wait, connect and busy timeout (40 s). The rest is margin
#: for the transactions themselves and the row locks they meet (the user's other short
#: transactions). Only a process that died (or stalled past all that) leaves a lease behind: the
#: user's changes that take it answer 409 until it ends. An undo that comes later still runs while
#: no other change took the lease since (its token, ``lease_seq``, is still the user's).
REMOVAL_LEASE_MS = 120_000


def _ensure_user_state(schema: Schema) -> Executable:
    t = schema.user_state
    if schema.dialect == "postgresql":
        return postgresql.insert(t).values(user_id=bindparam("u")).on_conflict_do_nothing(index_elements=["user_id"])
    if schema.dialect in ("mysql", "mariadb"):
        return mysql.insert(t).values(user_id=bindparam("u")).on_duplicate_key_update(user_id=t.c.user_id)
    if schema.dialect == "sqlite":
        return sqlite.insert(t).values(user_id=bindparam("u")).on_conflict_do_nothing(index_elements=["user_id"])
    raise ValueError(f"unsupported SQL dialect {schema.dialect!r}")


def ensure_user_state(schema: Schema, user_id: str) -> Statement:
    """INSERT the user's state row unless it exists: one statement, safe under concurrency."""
    return schema.prepared(_ensure_user_state), {"u": user_id}


def lock_user_state(schema: Schema, user_id: str) -> SqlGen[Row[Any]]:
    """The user's state row, made if missing, then locked until the transaction ends: the one lock
    that serializes changes deciding from several of a user's authenticator rows. One row found by
    its primary key: a record lock and no gap lock on MariaDB, so a transaction holding it inserts
    authenticator rows without meeting another one's wait (range locks on ``totp_factors`` would:
    an insert into a gap another transaction waits to lock is a deadlock there). SQLite needs no
    lock: its writers run one at a time (``BEGIN IMMEDIATE``). Replies the factor-change lease as
    the lock found it (``removing_until``, ``lease_seq``: a locking read sees the newest committed
    row on every backend, however long it waited), for ``lease_live`` and ``take_lease``."""
    t = schema.user_state
    yield ensure_user_state(schema, user_id)
    return (yield select(t.c.removing_until, t.c.lease_seq).where(t.c.user_id == user_id).with_for_update()).one()


def lease_live(state: Row[Any], at: int) -> bool:
    """Another change's factor-change lease is live at ``at`` (read under the state row's lock):
    explains a refusal (``Status.BUSY``) of a change that writes nothing; ``take_lease`` decides."""
    return state.removing_until is not None and state.removing_until >= at


def take_lease(schema: Schema, user_id: str, at: int, state: Row[Any], *, hold: bool = True,
               only_if: ColumnElement[bool] | None = None, forget_devices: bool = False) -> SqlGen[int | None]:
    """Take the user's factor-change lease, under the state row's lock (``lock_user_state``, whose
    reply is ``state``), for a change that is about to be written, never for one that writes
    nothing (R9-5: a request that changed nothing would otherwise void the undo of a stalled
    change whose lease had run out). One conditional UPDATE decides: it matches only while no
    other change's lease is live (none, or one that ended before ``at``) and the counter is still
    the one read, so of two changes exactly one holds it; it moves the counter on. Replies the
    lease's token, the new counter value, which no later lease of the user repeats (every take
    and every administrator's clear moves it on: R9-6; a lease's end could repeat); None when
    another is live (nothing written: the change answers ``Status.BUSY`` and writes nothing
    either). ``only_if``: a condition of the change itself (``DisableSecondFactor``: the user has
    rows to remove), decided by the same statement. ``hold``: False for a change its request
    cannot undo (an app removed while another factor remains): the lease is taken and released in
    that one statement, so that the change still waits for a live lease, and the undo of a stalled
    change, finding the counter moved on, puts nothing back over it. ``forget_devices``: the change
    takes a second factor away while two-factor may stay on (an app, a channel's address), so the
    same statement moves the generation on: the hot copy, repaired from it at the user's next read
    of the record, forgets every trusted device, whatever happens to the hot step that forgets them
    at once (a crash before it, a device trusted between it and this commit: R11-B, C, D). It only
    ever takes access away: a change undone later has forgotten them too.

    Why: a change whose hot re-check runs after its commit may be undone, and two undos do not
    compose (R8-2: a ``disable-otp`` put back nothing in a ``disable``'s window, then the disable's
    undo put back only what it took, so the address was lost though both answered 503 "nothing
    changed"; R9-1, R9-2: an app's confirmation and its undo the same with a removal). With one
    such change in flight per user, each undo puts back over the state it left."""
    s = schema.user_state
    seq = int(state.lease_seq)
    taken = (yield update(s).where(s.c.user_id == user_id, s.c.lease_seq == seq,
                                   or_(s.c.removing_until.is_(None), s.c.removing_until < at),
                                   *(() if only_if is None else (only_if,)))
             .values(removing_until=at + REMOVAL_LEASE_MS if hold else None, lease_seq=seq + 1,
                     **({"generation": s.c.generation + 1} if forget_devices else {}))).rowcount
    return seq + 1 if taken else None


def take_lease_while_on(schema: Schema, user_id: str, at: int, state: Row[Any]) -> SqlGen[int | None]:
    """``take_lease`` for an addition that needs the lease only while a factor turns the user's
    two-factor on (``RegisterPasskey``): one conditional UPDATE, under the state row's lock, decides
    both whether two-factor is on (``on_condition``) and, if so, whether the lease is free, and
    takes it then. Replies the lease's token; 0 when two-factor is off (nothing written: no lease,
    the counter unmoved); None while two-factor is on and another change's lease is live (nothing
    written: ``Status.BUSY``).

    Why (R10-3, R10-1): with two-factor off no other change that takes the lease can be made for
    the user but a removal in flight (whose undo removes the passkeys registered in its window
    anyway, R7-3) or another registration (two registrations' undos compose: each removes its own
    passkey), so the lease guards nothing there; taking it answered 409 for a stale lease or a
    second tab, and, taking an expired one, moved the counter on under a stalled disable, whose
    undo then put nothing back (R10-1: the password alone registers a passkey once the record
    says off). The decision is the statement's (its ``CASE`` and ``WHERE`` read the factors under
    the same snapshot, after the state row's lock, which every change that turns two-factor on
    takes too); the read after it only learns which branch that statement took."""
    s = schema.user_state
    seq = int(state.lease_seq)
    on = on_condition(schema, user_id)
    matched = (yield update(s).where(s.c.user_id == user_id, s.c.lease_seq == seq,
                                     or_(~on, s.c.removing_until.is_(None), s.c.removing_until < at))
               .values(removing_until=case((on, at + REMOVAL_LEASE_MS), else_=s.c.removing_until),
                       lease_seq=case((on, seq + 1), else_=s.c.lease_seq))).rowcount
    if not matched:
        return None
    now = int((yield select(s.c.lease_seq).where(s.c.user_id == user_id)).scalar_one())
    return now if now == seq + 1 else 0


def end_removal(schema: Schema, user_id: str, lease: int) -> SqlGen[bool]:
    """Release the lease whose token is ``lease`` (one conditional UPDATE): False when the user's
    lease is not that one any more (another change took one since, its own time having run out,
    or an administrator's change cleared it: the counter moved on), or was released already."""
    s = schema.user_state
    return bool((yield update(s).where(s.c.user_id == user_id, s.c.lease_seq == lease,
                                       s.c.removing_until.is_not(None))
                 .values(removing_until=None)).rowcount)


def clear_lease(schema: Schema) -> dict[str, Any]:
    """The SET values of an administrator's change of the user's factors (a reset, an import, an
    ``enable_otp``), written in its state row UPDATE: the factor-change lease goes and the counter
    moves on, so that the undo of a user's change still in flight finds its lease gone and puts
    nothing back over the administrator's change (R9-3)."""
    s = schema.user_state
    return {"removing_until": None, "lease_seq": s.c.lease_seq + 1}


def _clear_failures(schema: Schema) -> Executable:
    t = schema.user_state
    return update(t).where(t.c.user_id == bindparam("u"), t.c.failure_streak > 0).values(failure_streak=0)


def clear_failures(schema: Schema, user_id: str) -> Statement:
    """End the failure streak (a proof succeeded). A permanent lock stays: only an admin lifts it."""
    return schema.prepared(_clear_failures), {"u": user_id}


@dataclass(frozen=True, slots=True)
class UserRecord:
    """What the second-factor flows need about a user, read in one transaction. ``parts`` holds
    each factor's part by its name (``factors.FACTORS``: ``Factor.read``); the built-in factors'
    parts are also typed properties below."""

    user_id: str
    parts: Mapping[str, Any] = field(default_factory=dict)
    #: A second factor is due at sign-in: a factor whose part turns it on (a confirmed
    #: authenticator app, codes by message; ``Factor.turns_on``), decided once by ``LoadUser``
    #: (read on every request of the user: a field, not a walk of the registry each time).
    two_factor_enabled: bool = False
    failure_streak: int = 0
    locked_at: int | None = None  # the permanent lock (the failure ceiling); None: not locked
    generation: int = 0
    revoked_at: int | None = None
    account: Account | None = None  # the built-in account; None for an app's own users

    def has_factor_rows(self) -> bool:
        """Any factor's part holds anything (an unconfirmed app, a backup code, a passkey too)."""
        from .factors import FACTORS

        return any(f.present(self.parts.get(f.name)) for f in FACTORS)

    # The built-in factors' parts, typed.
    @property
    def totp(self) -> tuple[TotpFactor, ...]:
        """The authenticator apps, confirmed or being set up, oldest first."""
        return cast("tuple[TotpFactor, ...]", self.parts.get("totp", ()))

    @property
    def otp(self) -> tuple[OtpFactor, ...]:
        """Confirmed addresses for codes by message (email, then SMS)."""
        return cast("tuple[OtpFactor, ...]", self.parts.get("otp", ()))

    @property
    def backup_codes(self) -> int:
        """How many backup codes are left."""
        codes: CodeCount | None = self.parts.get("backup_codes")
        return codes.count if codes is not None else 0

    @property
    def codes_key_id(self) -> str:
        """The key the backup codes are hashed under ("" without codes)."""
        codes: CodeCount | None = self.parts.get("backup_codes")
        return codes.key_id if codes is not None else ""

    @property
    def passkeys(self) -> int:
        """How many passkeys the user has."""
        return cast(int, self.parts.get("passkeys", 0))


@dataclass(frozen=True, slots=True)
class LoadUser(RecordOp[UserRecord]):
    """The lookup a verification starts with: every factor's part (``Factor.load`` / ``read``),
    the lock, the generation, and the built-in account (if any). One prepared statement
    (``_load_user``), whatever the number of factors."""

    user_id: str
    writes: ClassVar[bool] = False

    def run(self, schema: Schema) -> SqlGen[UserRecord]:
        from .accounts import Account
        from .factors import FACTORS

        rows = (yield schema.prepared(_load_user), {"u": self.user_id}).all()
        row, u = rows[0], self.user_id
        account = None if row.account_email is None else Account(
            u, row.account_email, row.account_password_hash, row.account_name, row.account_created_at)
        parts = {f.name: f.read(row, rows) for f in FACTORS}
        on = any(f.turns_on is not None and f.turns_on(parts[f.name]) for f in FACTORS)
        return UserRecord(u, parts, on, int(row.failure_streak or 0), row.locked_at, int(row.generation or 0),
                          row.revoked_at, account)


def _load_user(schema: Schema) -> Executable:
    """``LoadUser``'s one statement: a row of scalar subqueries (each an index lookup): the state
    and the account, which may not exist (then NULLs: no lock, generation 0, no built-in
    account), and each factor's columns (``Factor.load``); outer-joined with the rows of the one
    factor that has several to return (``Factor.joined``, the authenticator apps): one row per
    app, or one row of NULL app columns for a user without any. One round trip."""
    from .factors import FACTORS

    s, a = schema.user_state, schema.accounts
    u: BindParameter[str] = bindparam("u")
    columns: list[Label[Any]] = [
        *(select(column).where(s.c.user_id == u).scalar_subquery().label(column.name)
          for column in (s.c.failure_streak, s.c.locked_at, s.c.generation, s.c.revoked_at)),
        *(select(column).where(a.c.id == u).scalar_subquery().label(f"account_{column.name}")
          for column in (a.c.email, a.c.password_hash, a.c.name, a.c.created_at)),
    ]
    for factor in FACTORS:
        columns += factor.load(schema, u)
    labels = [c.name for c in columns]
    if len(set(labels)) != len(labels):
        raise ValueError(f"LoadUser: two columns of one label among {labels}")
    scalars = select(*columns).subquery("scalars")
    joined = next((f.joined for f in FACTORS if f.joined is not None), None)
    if joined is None:
        return select(scalars)
    table = joined.table(schema)
    return (select(scalars, table).select_from(scalars.outerjoin(table, table.c.user_id == u))
            .order_by(*joined.order_by(schema)))


def on_condition(schema: Schema, user_id: str, *, but: str = "") -> ColumnElement[bool]:
    """True when a factor other than ``but`` turns the user's two-factor on (``Factor.on_in_sql``)."""
    from .factors import FACTORS

    conditions = [f.on_in_sql(schema, user_id) for f in FACTORS if f.on_in_sql is not None and f.name != but]
    return or_(*conditions) if conditions else false()


def takeable(schema: Schema, user_id: str) -> ColumnElement[bool]:
    """True when the user has a row that disable takes (``take_second_factor``: every factor's
    rows but those disable keeps)."""
    from .factors import FACTORS

    return or_(false(), *(exists().where(t.c.user_id == user_id) for f in FACTORS
                          if f.take is not None and not f.kept_by_disable for t in schema.tables_of[f.name]))


def others_on(schema: Schema, user_id: str, *, but: str) -> Executable:
    """A SELECT of one boolean: whether a factor other than ``but`` turns the user's two-factor on
    (``Factor.on_in_sql``), read by a removal of ``but``'s rows after ``factors.totp.lock_user_factors``
    to decide whether it removes the last factor."""
    return select(on_condition(schema, user_id, but=but))


def any_on(schema: Schema, user_id: str) -> Executable:
    """A SELECT of one boolean: whether any factor turns the user's two-factor on."""
    return others_on(schema, user_id, but="")


@dataclass(frozen=True, slots=True)
class FailureCount:
    streak: int
    locked: bool  # the permanent lock is (now) on
    locked_now: bool = False  # this failure set it (and wrote ``audit_on_lock``): once, however many race


@dataclass(frozen=True, slots=True)
class RecordFailure(RecordOp[FailureCount]):
    """Count one failed second-factor proof; at ``ceiling`` consecutive failures (NIST's 100) the
    account locks until an administrator resets it. The lock is audited in the same transaction
    (``audit_on_lock``); ``audit``, what else the failure brought (the hot store's temporary lock,
    when that store decided first), is written when it does not lock: the permanent lock says more."""

    user_id: str
    ceiling: int
    at: int
    audit_on_lock: Sequence[AuditEntry] = ()
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[FailureCount]:
        t, u = schema.user_state, self.user_id
        yield ensure_user_state(schema, u)
        # Two statements, not one SET with both columns: MySQL evaluates SET assignments left to right
        # (later ones see earlier results), PostgreSQL and SQLite do not. The first holds the row lock.
        yield update(t).where(t.c.user_id == u).values(failure_streak=t.c.failure_streak + 1)
        locked_now = (yield update(t).where(t.c.user_id == u, t.c.locked_at.is_(None),
                                            t.c.failure_streak >= self.ceiling).values(locked_at=self.at)).rowcount
        rows = self.audit_on_lock if locked_now else self.audit
        if rows:
            yield audit_insert(schema, u, rows)
        row = (yield select(t.c.failure_streak, t.c.locked_at).where(t.c.user_id == u)).one()
        return FailureCount(int(row.failure_streak), row.locked_at is not None, bool(locked_now))


@dataclass(frozen=True, slots=True)
class Unlock(RecordOp[Status]):
    """Administrator: lift the permanent lock and end the streak. OK, or NOT_FOUND (no state row)."""

    user_id: str
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[Status]:
        t = schema.user_state
        done = (yield update(t).where(t.c.user_id == self.user_id)
                .values(failure_streak=0, locked_at=None)).rowcount
        if done and self.audit:
            yield audit_insert(schema, self.user_id, self.audit)
        return Status.OK if done else Status.NOT_FOUND


@dataclass(frozen=True, slots=True)
class RevokeSessions(RecordOp[int]):
    """End every session: bump the generation (the hot store's copies compare with it) and stamp
    ``revoked_at``. Replies with the new generation."""

    user_id: str
    at: int
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[int]:
        t, u = schema.user_state, self.user_id
        yield ensure_user_state(schema, u)
        yield update(t).where(t.c.user_id == u).values(generation=t.c.generation + 1, revoked_at=self.at)
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return int((yield select(t.c.generation).where(t.c.user_id == u)).scalar_one())


@dataclass(frozen=True, slots=True)
class RemoveSecondFactor(RecordOp[Status]):
    """Disable two-factor (the user) or reset it (an administrator): every factor's rows
    (``Factor.remove``; the passkeys, ``kept_by_disable``, only with ``passkeys``) and the lock go
    in one transaction; with ``end_sessions`` (an administrator's reset) the generation is bumped and
    ``revoked_at`` stamped so every session ends. A verify racing it finds its factor gone
    (NOT_FOUND). The factor-change lease is cleared too (``clear_lease``): the undo of a user's
    change still in flight then finds its lease gone and puts nothing back over the reset. OK, or
    NOT_FOUND when nothing was removed (the lock is lifted either way)."""

    user_id: str
    at: int
    passkeys: bool = False
    audit: Sequence[AuditEntry] = ()
    end_sessions: bool = True

    def run(self, schema: Schema) -> SqlGen[Status]:
        from .factors import FACTORS
        from .factors.totp import lock_user_factors  # that module imports this one

        u = self.user_id
        # The user's authenticator rows, then the state row that adding one locks (lock order:
        # factor rows before user_state): an app added at the same time (AddAuthenticator) is then
        # either refused (no confirmed app left) or committed before the DELETE below starts, and
        # deleted by it (on PostgreSQL a DELETE whose snapshot predates that commit would leave it).
        yield from lock_user_factors(schema, u)
        removed = 0
        for factor in FACTORS:
            if self.passkeys or not factor.kept_by_disable:
                removed += yield from factor.remove(schema, u)
        t = schema.user_state
        yield ensure_user_state(schema, u)
        revoke = {"generation": t.c.generation + 1, "revoked_at": self.at} if self.end_sessions else {}
        yield update(t).where(t.c.user_id == u).values(failure_streak=0, locked_at=None, **clear_lease(schema),
                                                       **revoke)
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return Status.OK if removed else Status.NOT_FOUND


@dataclass(frozen=True, slots=True)
class DisabledSecondFactor:
    """What ``DisableSecondFactor`` removed, exactly as it was: what ``RestoreSecondFactor`` puts
    back. ``taken``: each factor's rows (``Factor.take``), by factor name; their reprs show no
    secret or hash. ``passkeys``: the credential keys of the passkeys the user had then (disable
    keeps them), so that an undo knows which ones were registered after it (R7-3); None (not
    read) keeps every passkey. ``lease``: the token of the factor-change lease it holds
    (``take_lease``), released by the undo or, once the removal is confirmed, by ``EndRemoval``."""

    taken: Mapping[str, tuple[Any, ...]]
    failure_streak: int
    locked_at: int | None
    passkeys: frozenset[str] | None = None
    lease: int = 0

    @property
    def totp(self) -> tuple[TotpFactor, ...]:
        return cast("tuple[TotpFactor, ...]", self.taken.get("totp", ()))

    @property
    def codes(self) -> tuple[BackupCode, ...]:
        return cast("tuple[BackupCode, ...]", self.taken.get("backup_codes", ()))

    @property
    def otp(self) -> tuple[tuple[str, str, int], ...]:
        """Addresses for codes by message: (channel, address, created_at)."""
        return cast("tuple[tuple[str, str, int], ...]", self.taken.get("otp", ()))


def take_second_factor(schema: Schema, user_id: str, lease: int,
                       audit: Sequence[AuditEntry] = ()) -> SqlGen[DisabledSecondFactor | None]:
    """Every factor's rows but those disable keeps (``Factor.take``), and the streak and the lock,
    under the locks every factor removal takes (``lock_user_factors``, taken by the caller, with
    the factor-change lease ``lease``): ``DisableSecondFactor``, and the removals that find they remove
    the last factor (``DisableOtp``, ``RemoveAuthenticator``). None when there was nothing to take
    (nothing written)."""
    from .factors import FACTORS

    s, u = schema.user_state, user_id
    taken: dict[str, tuple[Any, ...]] = {}
    for factor in FACTORS:
        if factor.take is not None and not factor.kept_by_disable:
            rows = yield from factor.take(schema, u)
            if rows:
                taken[factor.name] = rows
    if not taken:
        return None
    state = (yield select(s.c.failure_streak, s.c.locked_at).where(s.c.user_id == u).with_for_update()).one()
    yield update(s).where(s.c.user_id == u).values(failure_streak=0, locked_at=None)
    if audit:
        yield audit_insert(schema, u, audit)
    p = schema.passkeys
    kept = frozenset((yield select(p.c.credential_key).where(p.c.user_id == u)).scalars())
    return DisabledSecondFactor(taken, int(state.failure_streak or 0), state.locked_at, kept, lease)


@dataclass(frozen=True, slots=True)
class DisableSecondFactor(RecordOp["DisabledSecondFactor | None"]):
    """The user's disable: every factor's rows but those disable keeps (``Factor.take``; the
    passkeys stay), the streak and the lock with them (as ``RemoveSecondFactor`` without
    ``end_sessions``), in one transaction, holding the user's factor-change lease (``take_lease``)
    from then on. Replies with what was removed, read under the same row locks (FOR UPDATE) as the
    deletes, so that the flow can undo it exactly (``RestoreSecondFactor``) when the factor-change
    rule, re-checked after this commit, refuses; None, with nothing written (not the lease either:
    R9-5), when there is nothing to remove, or while another change of the user's
    factors is in flight (its lease is live): either way another request changed them, or may
    still put them back."""

    user_id: str
    at: int
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[DisabledSecondFactor | None]:
        from .factors.totp import lock_user_factors

        u = self.user_id
        # The locks every factor removal takes (the user's authenticator rows, then the state row
        # that adding one locks): an app added at the same time is refused, or committed before
        # the reads below, and so removed (and put back by an undo) with the rest.
        state = yield from lock_user_factors(schema, u)
        # One statement decides: the lease is free and there is something to remove (a disable
        # that would remove nothing writes nothing, the lease included: R9-5).
        lease = yield from take_lease(schema, u, self.at, state, only_if=takeable(schema, u))
        if lease is None:
            return None
        removed = yield from take_second_factor(schema, u, lease, self.audit)
        if removed is None:  # only rows that are no factor (a staged set of codes): nothing to undo
            yield from end_removal(schema, u, lease)
        return removed


@dataclass(frozen=True, slots=True)
class RestoreSecondFactor(RecordOp[Status]):
    """Undo a ``DisableSecondFactor``: "nothing changed", so what was enrolled while the factor was
    gone goes first (R7-3, R7-4: the record said 2FA off, so the password alone signed in and
    could set up an app or an address of its own), then every factor's rows it removed come back
    as they were (``Factor.put_back``; an app's ``last_step`` too: nothing could be accepted while
    it was gone), and so do its streak and lock (added to whatever was counted since). What was
    enrolled meanwhile: every row of the factors disable removes (it removed them all, so any row
    there now is newer: apps, addresses, backup codes, staged or not), and the passkeys not among
    those the user had then (``DisabledSecondFactor.passkeys``; disable keeps the others). Under
    the locks every factor removal takes, so an enrolment racing it is decided before (and
    removed) or after (against the restored factor); the removal's lease is released in the same
    transaction. OK; CHANGED when the lease is not the removal's any more (nothing written: an
    administrator's change cleared it, or it ran out and another change took it, which stands);
    or TAKEN when the unique key refuses the put-back all the same (nothing is written;
    the lease then runs out by itself)."""

    user_id: str
    removed: DisabledSecondFactor
    audit: Sequence[AuditEntry] = ()
    on_conflict: ClassVar[Any] = Status.TAKEN

    def run(self, schema: Schema) -> SqlGen[Status]:
        from .factors import FACTORS
        from .factors.totp import lock_user_factors

        s, u, r = schema.user_state, self.user_id, self.removed
        yield from lock_user_factors(schema, u)
        if not (yield from end_removal(schema, u, r.lease)):
            return Status.CHANGED
        for factor in FACTORS:
            if not factor.kept_by_disable:
                yield from factor.remove(schema, u)
        if r.passkeys is not None:
            p = schema.passkeys
            yield delete(p).where(p.c.user_id == u, p.c.credential_key.not_in(sorted(r.passkeys)))
        for factor in FACTORS:
            rows = r.taken.get(factor.name)
            if rows and factor.put_back is not None:
                yield from factor.put_back(schema, u, rows)
        yield ensure_user_state(schema, u)
        yield update(s).where(s.c.user_id == u).values(failure_streak=s.c.failure_streak + r.failure_streak,
                                                        locked_at=func.coalesce(s.c.locked_at, r.locked_at))
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return Status.OK


@dataclass(frozen=True, slots=True)
class LeasedChange:
    """The reply of an addition that holds the factor-change lease until its request settles it
    (``ConfirmAuthenticator``, ``RegisterPasskey``): its status, and the lease's token (0 unless
    the addition was made)."""

    status: Status
    lease: int = 0


@dataclass(frozen=True, slots=True)
class EndRemoval(RecordOp[Status]):
    """A change that holds the factor-change lease confirmed (its hot re-check passed: a removal,
    an app's confirmation, a passkey's registration): release the lease whose token is ``lease``,
    so that the user's next change need not wait for it to run out. One conditional UPDATE of the
    state row. OK, or NOT_FOUND when the lease is not that one any more (run out and taken by
    another change, or cleared by an administrator's change): nothing written."""

    user_id: str
    lease: int

    def run(self, schema: Schema) -> SqlGen[Status]:
        return Status.OK if (yield from end_removal(schema, self.user_id, self.lease)) else Status.NOT_FOUND

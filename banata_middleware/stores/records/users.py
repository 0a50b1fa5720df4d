"""Per-user state that must outlive Redis: the permanent lock and the session generation, and the
one read the second-factor flows start from (``LoadUser``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import BindParameter, Executable, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .ops import AuditEntry, RecordOp, SqlGen, Statement, Status, audit_insert

if TYPE_CHECKING:
    from .accounts import Account
    from .factors.backup_codes import BackupCode
    from .factors.otp import OtpFactor
    from .factors.totp import TotpFactor
    from .schema import Schema

__all__ = ["DisableSecondFactor", "DisabledSecondFactor", "FailureCount", "LoadUser", "RecordFailure",
           "RemoveSecondFactor", "RestoreSecondFactor", "RevokeSessions", "Unlock", "UserRecord", "clear_failures",
           "ensure_user_state", "lock_user_state"]


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


def lock_user_state(schema: Schema, user_id: str) -> SqlGen[None]:
    """The user's state row, made if missing, then locked until the transaction ends: the one lock
    that serializes changes deciding from several of a user's authenticator rows. One row found by
    its primary key: a record lock and no gap lock on MariaDB, so a transaction holding it inserts
    authenticator rows without meeting another one's wait (range locks on ``totp_factors`` would:
    an insert into a gap another transaction waits to lock is a deadlock there). SQLite needs no
    lock: its writers run one at a time (``BEGIN IMMEDIATE``)."""
    t = schema.user_state
    yield ensure_user_state(schema, user_id)
    yield select(t.c.user_id).where(t.c.user_id == user_id).with_for_update()


def _clear_failures(schema: Schema) -> Executable:
    t = schema.user_state
    return update(t).where(t.c.user_id == bindparam("u"), t.c.failure_streak > 0).values(failure_streak=0)


def clear_failures(schema: Schema, user_id: str) -> Statement:
    """End the failure streak (a proof succeeded). A permanent lock stays: only an admin lifts it."""
    return schema.prepared(_clear_failures), {"u": user_id}


@dataclass(frozen=True, slots=True)
class UserRecord:
    """What the second-factor flows need about a user, read in one transaction."""

    user_id: str
    totp: tuple[TotpFactor, ...]
    backup_codes: int
    passkeys: int
    failure_streak: int = 0
    locked_at: int | None = None  # the permanent lock (the failure ceiling); None: not locked
    generation: int = 0
    revoked_at: int | None = None
    account: Account | None = None  # the built-in account; None for an app's own users
    codes_key_id: str = ""  # the key the backup codes are hashed under ("" without codes)
    otp: tuple[OtpFactor, ...] = ()  # confirmed addresses for codes by message (email, then SMS)

    @property
    def two_factor_enabled(self) -> bool:
        """A second factor is due at sign-in: a confirmed authenticator app, or codes by message."""
        return bool(self.otp) or any(f.confirmed_at is not None for f in self.totp)


@dataclass(frozen=True, slots=True)
class LoadUser(RecordOp[UserRecord]):
    """The lookup a verification starts with: factors, backup-code count and key, lock,
    generation, and the built-in account (if any). One prepared statement (``_load_user``)."""

    user_id: str
    writes: ClassVar[bool] = False

    def run(self, schema: Schema) -> SqlGen[UserRecord]:
        from .accounts import Account
        from .factors.otp import OtpFactor
        from .factors.totp import TotpFactor

        rows = (yield schema.prepared(_load_user), {"u": self.user_id}).all()
        row, u = rows[0], self.user_id
        account = None if row.account_email is None else Account(
            u, row.account_email, row.account_password_hash, row.account_name, row.account_created_at)
        otp = tuple(OtpFactor(channel, address) for channel, address in
                    (("email", row.otp_email), ("sms", row.otp_sms)) if address is not None)
        return UserRecord(u, tuple(TotpFactor.from_row(r) for r in rows if r.id is not None), int(row.codes),
                          int(row.keys), int(row.failure_streak or 0), row.locked_at, int(row.generation or 0),
                          row.revoked_at, account, row.codes_kid or "", otp)


def _load_user(schema: Schema) -> Executable:
    """``LoadUser``'s one statement: a row of scalar subqueries (each an index lookup) for the
    counts, the state and the account, which may not exist (then NULLs: no lock, generation 0, no
    built-in account), outer-joined with the factors: one row per factor, or one row of NULL
    factor columns for a user without any. One round trip."""
    s, f, b, p, a = schema.user_state, schema.totp_factors, schema.backup_codes, schema.passkeys, schema.accounts
    o = schema.otp_factors
    u: BindParameter[str] = bindparam("u")
    scalars = select(
        # Codes in use only: a staged set (generate-backup-codes between its two phases) is none yet.
        select(func.count()).select_from(b).where(b.c.user_id == u, b.c.staged.is_(None)).scalar_subquery()
        .label("codes"),
        select(func.min(b.c.key_id)).where(b.c.user_id == u, b.c.staged.is_(None)).scalar_subquery()
        .label("codes_kid"),
        select(func.count()).select_from(p).where(p.c.user_id == u).scalar_subquery().label("keys"),
        *(select(column).where(s.c.user_id == u).scalar_subquery().label(column.name)
          for column in (s.c.failure_streak, s.c.locked_at, s.c.generation, s.c.revoked_at)),
        *(select(column).where(a.c.id == u).scalar_subquery().label(f"account_{column.name}")
          for column in (a.c.email, a.c.password_hash, a.c.name, a.c.created_at)),
        *(select(o.c.address).where(o.c.user_id == u, o.c.channel == channel).scalar_subquery()
          .label(f"otp_{channel}") for channel in ("email", "sms")),
    ).subquery("scalars")
    return (select(scalars, f).select_from(scalars.outerjoin(f, f.c.user_id == u))
            .order_by(f.c.created_at, f.c.id))


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
    """Disable two-factor (the user) or reset it (an administrator): every TOTP factor, backup
    code and address for codes by message, optionally the passkeys, and the lock go in one
    transaction; with ``end_sessions`` (an administrator's reset) the generation is bumped and
    ``revoked_at`` stamped so every session ends. A verify racing it finds its factor gone
    (NOT_FOUND). OK, or NOT_FOUND when nothing was removed (the lock is lifted either way)."""

    user_id: str
    at: int
    passkeys: bool = False
    audit: Sequence[AuditEntry] = ()
    end_sessions: bool = True

    def run(self, schema: Schema) -> SqlGen[Status]:
        from .factors.backup_codes import take_codes
        from .factors.totp import lock_user_factors  # that module imports this one

        u = self.user_id
        # The user's authenticator rows, then the state row that adding one locks (lock order:
        # factor rows before user_state): an app added at the same time (AddAuthenticator) is then
        # either refused (no confirmed app left) or committed before the DELETE below starts, and
        # deleted by it (on PostgreSQL a DELETE whose snapshot predates that commit would leave it).
        yield lock_user_factors(schema, u)
        yield from lock_user_state(schema, u)
        in_use = yield from take_codes(schema, u)
        removed = 0
        for table in (schema.totp_factors, schema.backup_codes, *((schema.passkeys,) if self.passkeys else ()),
                      schema.otp_factors):
            gone = (yield delete(table).where(table.c.user_id == u)).rowcount
            # A staged set (generate-backup-codes under way) goes too, but is no factor: counted
            # from the codes in use, read under the same locks as DisableSecondFactor reads them.
            removed += len(in_use) if table is schema.backup_codes else gone
        t = schema.user_state
        yield ensure_user_state(schema, u)
        revoke = {"generation": t.c.generation + 1, "revoked_at": self.at} if self.end_sessions else {}
        yield update(t).where(t.c.user_id == u).values(failure_streak=0, locked_at=None, **revoke)
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return Status.OK if removed else Status.NOT_FOUND




@dataclass(frozen=True, slots=True)
class DisabledSecondFactor:
    """What ``DisableSecondFactor`` removed, exactly as it was: what ``RestoreSecondFactor`` puts
    back. The factors' and codes' reprs show no secret or hash."""

    totp: tuple[TotpFactor, ...]
    codes: tuple[BackupCode, ...]
    failure_streak: int
    locked_at: int | None
    otp: tuple[tuple[str, str, int], ...] = ()  # addresses for codes by message: (channel, address, created_at)


@dataclass(frozen=True, slots=True)
class DisableSecondFactor(RecordOp["DisabledSecondFactor | None"]):
    """The user's disable: every TOTP factor, backup code and address for codes by message go, the
    streak and the lock with them (as ``RemoveSecondFactor`` without ``end_sessions``), in one
    transaction. Replies with what was
    removed, read under the same row locks (FOR UPDATE) as the deletes, so that the flow can undo
    it exactly (``RestoreSecondFactor``) when the factor-change rule, re-checked after this commit,
    refuses; None when there was no factor or code."""

    user_id: str
    at: int
    audit: Sequence[AuditEntry] = ()

    def run(self, schema: Schema) -> SqlGen[DisabledSecondFactor | None]:
        from .factors.backup_codes import take_codes
        from .factors.totp import TotpFactor, lock_user_factors

        f, s, u = schema.totp_factors, schema.user_state, self.user_id
        # The user's authenticator rows, then the state row that adding one locks (as
        # RemoveSecondFactor): an app added at the same time is refused, or committed before the
        # reads below, and so removed (and put back by an undo) with the rest.
        yield lock_user_factors(schema, u)
        yield from lock_user_state(schema, u)
        totp = tuple(TotpFactor.from_row(r) for r in (yield select(f).where(f.c.user_id == u)
                                                        .order_by(f.c.id).with_for_update()).all())
        codes = yield from take_codes(schema, u)
        o = schema.otp_factors
        otp = tuple((r.channel, r.address, r.created_at) for r in (
            yield select(o.c.channel, o.c.address, o.c.created_at).where(o.c.user_id == u)
            .order_by(o.c.channel).with_for_update()).all())
        if not totp and not codes and not otp:
            return None
        yield delete(f).where(f.c.user_id == u)
        yield delete(schema.backup_codes).where(schema.backup_codes.c.user_id == u)
        yield delete(o).where(o.c.user_id == u)
        yield ensure_user_state(schema, u)
        state = (yield select(s.c.failure_streak, s.c.locked_at).where(s.c.user_id == u).with_for_update()).one()
        yield update(s).where(s.c.user_id == u).values(failure_streak=0, locked_at=None)
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return DisabledSecondFactor(totp, codes, int(state.failure_streak or 0), state.locked_at, otp)


@dataclass(frozen=True, slots=True)
class RestoreSecondFactor(RecordOp[Status]):
    """Undo a ``DisableSecondFactor``: the factors, codes and addresses it removed come back as they were
    (``last_step`` too: nothing could be accepted while they were gone), and so do its streak and
    lock (added to whatever was counted since). OK; or TAKEN when a factor was enrolled meanwhile
    (that enrolment stands: the unique key refuses the put-back, and nothing is written)."""

    user_id: str
    removed: DisabledSecondFactor
    audit: Sequence[AuditEntry] = ()
    on_conflict: ClassVar[Any] = Status.TAKEN

    def run(self, schema: Schema) -> SqlGen[Status]:
        from .factors.backup_codes import put_back_codes

        f, s, u, r = schema.totp_factors, schema.user_state, self.user_id, self.removed
        if r.totp:
            yield insert(f).values([{"user_id": u, "id": t.id, "name": t.name, "secret": t.secret,
                                     "key_id": t.key_id, "created_at": t.created_at,
                                     "confirmed_at": t.confirmed_at, "last_step": t.last_step,
                                     "last_used_at": t.last_used_at} for t in r.totp])
        back = put_back_codes(schema, u, r.codes)
        if back is not None:
            yield back
        if r.otp:
            yield insert(schema.otp_factors).values([{"user_id": u, "channel": channel, "address": address,
                                                      "created_at": at} for channel, address, at in r.otp])
        yield ensure_user_state(schema, u)
        yield update(s).where(s.c.user_id == u).values(failure_streak=s.c.failure_streak + r.failure_streak,
                                                        locked_at=func.coalesce(s.c.locked_at, r.locked_at))
        if self.audit:
            yield audit_insert(schema, u, self.audit)
        return Status.OK

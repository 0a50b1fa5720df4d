"""The same operation sequences on SQLite, PostgreSQL and MariaDB, with the sync and the async engine.

Each sequence is a generator: it yields a record operation, receives the reply, asserts on it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from records_support import Sequence, new_id, run_sequence

from banata_middleware.stores.records import (
    REMOVAL_LEASE_MS,
    AcceptTotpStep,
    Account,
    ActivateBackupCodes,
    AddAuthenticator,
    AddPasskey,
    AdvanceSignCount,
    AppendAudit,
    AuditEntry,
    AuthenticatorRemoval,
    BackupCodeUse,
    ConfirmAuthenticator,
    ConsumeBackupCode,
    CreateAccount,
    DisableOtp,
    DisableSecondFactor,
    DiscardBackupCodes,
    EnableOtp,
    EnableTotp,
    EndRemoval,
    GetAccount,
    GetAccountByEmail,
    GetPasskey,
    LeasedChange,
    ListAudit,
    ListPasskeys,
    LoadUser,
    OtpFactor,
    OtpRemoval,
    OtpRestore,
    Passkey,
    PruneAudit,
    RecordFailure,
    RecordOtpUse,
    RecordStore,
    RegisterPasskey,
    RemoveAuthenticator,
    RemoveOtp,
    RemovePasskey,
    RemoveSecondFactor,
    RemoveTotpFactor,
    RenamePasskey,
    ReplaceBackupCodes,
    RestoreOtp,
    RestoreSecondFactor,
    RevokeSessions,
    RewrapTotpSecret,
    SetPassword,
    StageBackupCodes,
    Status,
    Unlock,
)

T = 1_800_000_000_000  # Unix ms
STEP = 60_000_000


def _add_app(uid: str, factor: str) -> Sequence:
    """A second app, confirmed (two-factor is on already), as the flow confirms it: its
    confirmation takes the factor-change lease (the user's first: token 1), released once its
    re-check passed (``EndRemoval``)."""
    assert (yield AddAuthenticator(uid, factor, f"ct-{factor}", "k1", T, factor, 10, 0)) is Status.CREATED
    confirmed = yield ConfirmAuthenticator(uid, factor, f"ct-{factor}", STEP, T)
    assert confirmed.status is Status.ACCEPTED
    assert (yield EndRemoval(uid, confirmed.lease)) is Status.OK


def _enrolled(uid: str, factor: str = "f1", secret: str = "ct-1", step: int = STEP) -> Sequence:
    """Two-factor on with a first app, confirmed by the code of ``step``, as the enable flow turns
    it on (no backup codes here)."""
    assert (yield EnableTotp(uid, factor, secret, "k1", T, step, [], "", while_off=True)) is Status.CREATED


def test_sign_up_is_decided_by_the_unique_email_index(store: RecordStore, mode: str) -> None:
    uid, email = new_id(), f"{new_id('e')}@example.com"

    def sequence() -> Sequence:
        assert (yield CreateAccount(Account(uid, email, "hash-1", "Ann", T),
                                    audit=[AuditEntry("user.signed_up", T)])) is Status.CREATED
        assert (yield CreateAccount(Account(new_id(), email, "hash-2", "Bob", T),
                                    audit=[AuditEntry("user.signed_up", T)])) is Status.TAKEN
        assert (yield GetAccountByEmail(email)) == Account(uid, email, "hash-1", "Ann", T)
        assert (yield SetPassword(uid, "hash-3")) is Status.OK
        assert (yield GetAccount(uid)).password_hash == "hash-3"
        assert (yield SetPassword(new_id(), "hash-3")) is Status.NOT_FOUND
        # The refused sign-up was rolled back whole: its audit row does not exist.
        assert [e.type for e in (yield ListAudit(uid))] == ["user.signed_up"]

    run_sequence(store, mode, sequence)


def test_user_ids_are_compared_byte_for_byte(store: RecordStore, mode: str) -> None:
    """MariaDB's default collation would make 'Ann', 'ann' and 'ann ' one user; not here. Each
    variant turns two-factor on as if alone (another's app would make it CHANGED, or TAKEN by the
    key) and adds a second app under a cap of two (another's apps would count: FULL)."""
    base = new_id("ann")
    variants = [base, base.upper(), base + " "]

    def sequence() -> Sequence:
        for i, uid in enumerate(variants):
            assert (yield CreateAccount(Account(uid, f"{i}-{base}@example.com", "h", "", T))) is Status.CREATED
            yield from _enrolled(uid, "f", f"ct-{i}")
            assert (yield AddAuthenticator(uid, "g", f"ct-g-{i}", "k1", T, "Tablet", 2, 0)) is Status.CREATED
        for i, uid in enumerate(variants):
            record = yield LoadUser(uid)
            assert [f.secret for f in record.totp] == [f"ct-{i}", f"ct-g-{i}"]
            assert (yield GetAccount(uid)).id == uid

    run_sequence(store, mode, sequence)


def test_totp_step_is_accepted_once_and_only_forward(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        # The enrolment's own code cannot be used again to sign in.
        assert (yield AcceptTotpStep(uid, "f1", "ct-1", STEP)) is Status.REPLAYED
        assert (yield AcceptTotpStep(uid, "f1", "ct-1", STEP + 1,
                                     audit=[AuditEntry("two_factor.verified", T)])) is Status.ACCEPTED
        assert (yield AcceptTotpStep(uid, "f1", "ct-1", STEP + 1)) is Status.REPLAYED
        assert (yield AcceptTotpStep(uid, "f1", "ct-1", STEP)) is Status.REPLAYED  # an older step
        assert (yield AcceptTotpStep(uid, "f1", "other-ct", STEP + 5)) is Status.CHANGED
        assert (yield AcceptTotpStep(uid, "nope", "ct-1", STEP + 5)) is Status.NOT_FOUND
        record = yield LoadUser(uid)
        assert record.two_factor_enabled and record.totp[0].last_step == STEP + 1
        assert [e.type for e in (yield ListAudit(uid))] == ["two_factor.verified"]

    run_sequence(store, mode, sequence)


def test_an_unconfirmed_app_verifies_nothing_and_confirms_once(store: RecordStore, mode: str) -> None:
    """An app added while two-factor is on (``AddAuthenticator``) is unconfirmed until its first
    code (``ConfirmAuthenticator``): it verifies nothing before, and is confirmed once."""
    uid = new_id()
    added = [AuditEntry("two_factor.authenticator_added", T)]

    def sequence() -> Sequence:
        yield from _enrolled(uid, "f0", "ct-0")
        assert (yield AddAuthenticator(uid, "f1", "ct-1", "k1", T, "Tablet", 10, 0)) is Status.CREATED
        assert [(f.id, f.confirmed_at) for f in (yield LoadUser(uid)).totp] == [("f0", T), ("f1", None)]
        assert (yield AcceptTotpStep(uid, "f1", "ct-1", STEP)) is Status.CHANGED
        # Asking for a new QR code replaces the pending app; the old secret cannot confirm.
        assert (yield AddAuthenticator(uid, "f2", "ct-2", "k1", T, "Tablet", 10, 0)) is Status.CREATED
        assert (yield ConfirmAuthenticator(uid, "f1", "ct-1", STEP, T)) == LeasedChange(Status.NOT_FOUND)
        confirmed = yield ConfirmAuthenticator(uid, "f2", "ct-2", STEP, T, added)
        assert confirmed.status is Status.ACCEPTED
        assert (yield EndRemoval(uid, confirmed.lease)) is Status.OK  # its re-check passed
        assert (yield ConfirmAuthenticator(uid, "f2", "ct-2", STEP + 1, T + 1)) == LeasedChange(Status.CHANGED)
        # A confirmed app's name is not replaced by a new setup; another name is free.
        assert (yield AddAuthenticator(uid, "f3", "ct-3", "k1", T, "tablet", 10, 0)) is Status.TAKEN
        assert (yield AddAuthenticator(uid, "f3", "ct-3", "k1", T, "backup phone", 10, 0)) is Status.CREATED
        assert [f.id for f in (yield LoadUser(uid)).totp] == ["f0", "f2", "f3"]
        assert [e.type for e in (yield ListAudit(uid))] == ["two_factor.authenticator_added"]

    run_sequence(store, mode, sequence)


def test_disable_removes_factors_and_codes_and_a_racing_verify_finds_nothing(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        assert (yield ReplaceBackupCodes(uid, ["h1", "h2"], "k1", T)) == 2
        assert (yield RecordFailure(uid, 100, T)).streak == 1
        assert (yield RemoveSecondFactor(uid, T, audit=[AuditEntry("two_factor.disabled", T)])) is Status.OK
        assert (yield AcceptTotpStep(uid, "f1", "ct-1", STEP + 1)) is Status.NOT_FOUND
        assert (yield ConsumeBackupCode(uid, ["h1"])) == BackupCodeUse(Status.NOT_FOUND, 0)
        record = yield LoadUser(uid)
        assert (record.totp, record.backup_codes, record.failure_streak, record.generation) == ((), 0, 0, 1)
        assert (yield RemoveSecondFactor(uid, T)) is Status.NOT_FOUND
        assert [e.type for e in (yield ListAudit(uid))] == ["two_factor.disabled"]

    run_sequence(store, mode, sequence)


def test_a_disable_is_undone_exactly_and_what_was_enrolled_meanwhile_goes(store: RecordStore, mode: str) -> None:
    """DisableSecondFactor replies with what it removed; RestoreSecondFactor puts exactly that back
    (last step, codes, streak, lock), after removing whatever was enrolled in between (R7-3, R7-4:
    the record said off, so a password alone could enrol): apps, addresses, codes, and the
    passkeys the user did not have at the removal."""
    uid, other = new_id(), new_id()

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        assert (yield ReplaceBackupCodes(uid, ["h1", "h2"], "k1", T)) == 2
        assert (yield RecordFailure(uid, 100, T)).streak == 1
        assert (yield EnableOtp(uid, "email", "ann@example.com", T)) is Status.CREATED
        assert (yield DisableSecondFactor(other, T)) is None  # nothing to remove
        removed = yield DisableSecondFactor(uid, T, audit=[AuditEntry("two_factor.disabled", T)])
        assert [(f.id, f.secret, f.last_step) for f in removed.totp] == [("f1", "ct-1", STEP)]
        assert sorted(c.code_hash for c in removed.codes) == ["h1", "h2"]
        assert (removed.failure_streak, removed.locked_at, removed.otp) == (1, None, (("email", "ann@example.com", T),))
        record = yield LoadUser(uid)
        assert (record.totp, record.backup_codes, record.failure_streak, record.otp) == ((), 0, 0, ())
        assert not record.two_factor_enabled
        assert (yield RestoreSecondFactor(uid, removed, audit=[AuditEntry("two_factor.enabled", T)])) is Status.OK
        record = yield LoadUser(uid)
        assert (record.totp, record.backup_codes, record.codes_key_id, record.failure_streak) == \
            (removed.totp, 2, "k1", 1)
        assert [(o.channel, o.address) for o in record.otp] == [("email", "ann@example.com")]
        assert (yield AcceptTotpStep(uid, "f1", "ct-1", STEP)) is Status.REPLAYED  # the replay guard came back too
        assert (yield ConsumeBackupCode(uid, ["h1"])).status is Status.CONSUMED
        # Removed again; before the undo, an app under the same id, an address, codes and a passkey
        # are enrolled (the record said off): the undo removes them all, then puts its rows back.
        had, new = new_id("cred"), new_id("cred")  # credential keys are unique across users
        assert (yield AddPasskey(_passkey(uid, had))) is Status.CREATED
        removed = yield DisableSecondFactor(uid, T)
        yield from _enrolled(uid, secret="ct-new")
        assert (yield EnableOtp(uid, "sms", "+15550001111", T)) is Status.CREATED
        assert (yield ReplaceBackupCodes(uid, ["t1"], "k9", T)) == 1
        assert (yield AddPasskey(_passkey(uid, new))) is Status.CREATED
        assert (yield RestoreSecondFactor(uid, removed, audit=[AuditEntry("two_factor.enabled", T)])) is Status.OK
        record = yield LoadUser(uid)
        assert ([f.secret for f in record.totp], record.backup_codes, record.codes_key_id) == (["ct-1"], 1, "k1")
        assert [(o.channel, o.address) for o in record.otp] == [("email", "ann@example.com")]
        assert [p.credential_id for p in (yield ListPasskeys(uid))] == [had]
        assert (yield ConsumeBackupCode(uid, ["t1"])).status is Status.NOT_FOUND
        assert (yield ConsumeBackupCode(uid, ["h1"])).status is Status.NOT_FOUND  # used: not revived
        assert (yield ConsumeBackupCode(uid, ["h2"])).status is Status.CONSUMED
        assert [e.type for e in (yield ListAudit(uid))] == ["two_factor.disabled", "two_factor.enabled",
                                                             "two_factor.enabled"]

    run_sequence(store, mode, sequence)


def test_a_staged_set_is_no_code_until_activated_and_then_the_only_set(store: RecordStore, mode: str) -> None:
    """generate-backup-codes' two phases: a staged set (phase one) neither counts nor signs in, and
    the set in use keeps working beside it; activating it (phase two) deletes every other code of
    the user in the same transaction, audited there. A set staged and never activated (a crash, a
    refusal) changes nothing the user holds."""
    uid, other = new_id(), new_id()
    a, b, c = "a" * 32, "b" * 32, "c" * 32

    def sequence() -> Sequence:
        assert (yield ReplaceBackupCodes(uid, ["h1", "h2", "h3"], "k1", T)) == 3
        assert (yield ReplaceBackupCodes(other, ["n1"], "k1", T)) == 1
        assert (yield StageBackupCodes(uid, a, ["n1", "n2", "n2"], "k2", T + 1)) is Status.OK
        record = yield LoadUser(uid)
        assert (record.backup_codes, record.codes_key_id) == (3, "k1")  # the staged set is no code yet
        assert (yield ConsumeBackupCode(uid, ["n1"])) == BackupCodeUse(Status.NOT_FOUND, 3)
        assert (yield ConsumeBackupCode(uid, ["h3"])) == BackupCodeUse(Status.CONSUMED, 2)
        # A crash's leftover (b) and a concurrent generation's set (c) are staged beside it.
        assert (yield StageBackupCodes(uid, b, ["l1"], "k2", T + 2)) is Status.OK
        assert (yield StageBackupCodes(uid, c, ["m1"], "k2", T + 3)) is Status.OK
        assert (yield DiscardBackupCodes(uid, b)) is Status.OK  # a refused generation drops its own set
        assert (yield DiscardBackupCodes(uid, b)) is Status.NOT_FOUND
        assert (yield ActivateBackupCodes(uid, a, audit=[AuditEntry("two_factor.backup_codes_regenerated", T)])) \
            is Status.OK
        record = yield LoadUser(uid)
        assert (record.backup_codes, record.codes_key_id) == (2, "k2")
        assert (yield ConsumeBackupCode(uid, ["h1"])).status is Status.NOT_FOUND  # the old set is void
        assert (yield ConsumeBackupCode(uid, ["n1"])) == BackupCodeUse(Status.CONSUMED, 1)
        # The other generation's set went with the old one: it can no longer be activated.
        assert (yield ActivateBackupCodes(uid, c)) is Status.CHANGED
        assert (yield ActivateBackupCodes(uid, a)) is Status.CHANGED  # once only
        assert (yield ConsumeBackupCode(uid, ["m1"])).status is Status.NOT_FOUND
        assert (yield ConsumeBackupCode(uid, ["n2"])) == BackupCodeUse(Status.CONSUMED, 0)
        assert (yield ConsumeBackupCode(other, ["n1"])).status is Status.CONSUMED  # the other user's own
        # A disable removes a staged set too, and its undo does not bring it back as codes.
        assert (yield ReplaceBackupCodes(uid, ["h1"], "k1", T)) == 1
        assert (yield StageBackupCodes(uid, a, ["p1"], "k2", T + 4)) is Status.OK
        removed = yield DisableSecondFactor(uid, T)
        assert [x.code_hash for x in removed.codes] == ["h1"]
        assert (yield ActivateBackupCodes(uid, a)) is Status.CHANGED
        assert (yield RestoreSecondFactor(uid, removed)) is Status.OK
        assert (yield LoadUser(uid)).backup_codes == 1
        assert (yield ActivateBackupCodes(uid, a)) is Status.CHANGED
        assert (yield ConsumeBackupCode(uid, ["p1"])).status is Status.NOT_FOUND
        assert [e.type for e in (yield ListAudit(uid))] == ["two_factor.backup_codes_regenerated"]

    run_sequence(store, mode, sequence)


def test_remove_one_factor_and_rewrap_a_secret(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        assert (yield RewrapTotpSecret(uid, "f1", "ct-1", "ct-1b", "k2")) is Status.OK
        assert (yield RewrapTotpSecret(uid, "f1", "ct-1", "ct-1c", "k3")) is Status.CHANGED  # changed meanwhile
        factor = (yield LoadUser(uid)).totp[0]
        assert (factor.secret, factor.key_id, factor.last_step) == ("ct-1b", "k2", STEP)
        assert (yield AcceptTotpStep(uid, "f1", "ct-1b", STEP + 1)) is Status.ACCEPTED
        assert (yield RemoveTotpFactor(uid, "f1")) is Status.OK
        assert (yield RemoveTotpFactor(uid, "f1")) is Status.NOT_FOUND

    run_sequence(store, mode, sequence)


def test_codes_by_message_one_address_per_channel_and_2fa_on_with_them(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        assert not (yield LoadUser(uid)).two_factor_enabled
        assert (yield EnableOtp(uid, "email", "ann@example.com", T,
                                audit=[AuditEntry("two_factor.enabled", T)])) is Status.CREATED
        record = yield LoadUser(uid)
        assert record.otp == (OtpFactor("email", "ann@example.com"),) and record.two_factor_enabled
        assert record.totp == ()
        assert (yield EnableOtp(uid, "email", "ann@work.example", T)) is Status.OK  # replaces the channel's
        assert (yield EnableOtp(uid, "sms", "+15551234567", T)) is Status.CREATED
        assert (yield LoadUser(uid)).otp == (OtpFactor("email", "ann@work.example"), OtpFactor("sms", "+15551234567"))
        # A success ends the failure streak, with its audit row.
        assert (yield RecordFailure(uid, 100, T)).streak == 1
        assert (yield RecordOtpUse(uid, [AuditEntry("two_factor.verified", T)])) is Status.OK
        assert (yield LoadUser(uid)).failure_streak == 0
        assert (yield RemoveOtp(uid, "sms", [AuditEntry("otp.disabled", T)])) == (("sms", "+15551234567", T),)
        assert (yield RemoveOtp(uid, "sms")) == ()
        assert (yield LoadUser(uid)).otp == (OtpFactor("email", "ann@work.example"),)
        # Disabling two-factor removes codes by message too.
        assert (yield RemoveSecondFactor(uid, T, end_sessions=False)) is Status.OK
        record = yield LoadUser(uid)
        assert record.otp == () and not record.two_factor_enabled
        assert [e.type for e in (yield ListAudit(uid))] == ["two_factor.enabled", "two_factor.verified",
                                                            "otp.disabled"]

    run_sequence(store, mode, sequence)


def test_disable_otp_decides_in_sql_whether_it_removes_the_last_factor(store: RecordStore, mode: str) -> None:
    uid = new_id()
    stopped, off = [AuditEntry("otp.disabled", T)], [AuditEntry("two_factor.disabled", T)]

    def sequence() -> Sequence:
        assert (yield DisableOtp(uid, None, T, stopped, off)) == OtpRemoval(Status.NOT_FOUND, False)
        assert (yield EnableOtp(uid, "email", "ann@example.com", T)) is Status.CREATED
        assert (yield EnableOtp(uid, "sms", "+15551234567", T)) is Status.CREATED
        assert (yield ReplaceBackupCodes(uid, ["h1", "h2"], "k1", T)) == 2
        # one channel of two: the other keeps 2FA on; the removal holds the lease until settled
        sms = ("sms", "+15551234567", T)
        first = yield DisableOtp(uid, "sms", T, stopped, off)
        assert first == OtpRemoval(Status.OK, False, gone=(sms,), lease=1)  # the lease's token: the 1st
        assert (yield DisableOtp(uid, "email", T, stopped, off)) == OtpRemoval(Status.BUSY, False)
        # a refused removal's undo puts the row back as it was (R6-3), releasing the lease; once
        assert (yield RestoreOtp(uid, first.gone, first.lease)) == OtpRestore(Status.OK, ("sms",))
        assert (yield RestoreOtp(uid, first.gone, first.lease)) == OtpRestore(Status.CHANGED)
        assert (yield LoadUser(uid)).otp == (OtpFactor("email", "ann@example.com"), OtpFactor("sms", sms[1]))
        # not over an enrolment meanwhile (TAKEN: nothing put back), and the lease goes all the same
        second = yield DisableOtp(uid, "sms", T, stopped, off)
        assert second == OtpRemoval(Status.OK, False, gone=(sms,), lease=2)
        assert (yield EnableOtp(uid, "sms", "+15550000000", T + 1)) is Status.CREATED
        assert (yield RestoreOtp(uid, second.gone, second.lease)) == OtpRestore(Status.TAKEN, (), ("sms",))
        assert (yield LoadUser(uid)).otp == (OtpFactor("email", "ann@example.com"), OtpFactor("sms", "+15550000000"))
        # a removal confirmed (its flow's re-check passed) releases its lease: the next goes at once
        third = yield DisableOtp(uid, "sms", T, stopped, off)
        assert third == OtpRemoval(Status.OK, False, gone=(("sms", "+15550000000", T + 1),), lease=3)
        assert (yield EndRemoval(uid, third.lease)) is Status.OK
        assert (yield EndRemoval(uid, third.lease)) is Status.NOT_FOUND
        assert (yield DisableOtp(uid, "sms", T, stopped, off)) == OtpRemoval(Status.NOT_FOUND, False)  # none held
        # the last factor: 2FA goes with it (the backup codes too), and what went is replied
        result = yield DisableOtp(uid, "email", T, stopped, off)
        assert (result.status, result.two_factor_off, result.lease) == (Status.OK, True, 4)
        assert result.removed is not None and result.removed.otp == (("email", "ann@example.com", T),)
        assert len(result.removed.codes) == 2 and result.removed.lease == 4
        record = yield LoadUser(uid)
        assert (record.otp, record.backup_codes, record.two_factor_enabled) == ((), 0, False)
        assert [e.type for e in (yield ListAudit(uid))] == ["otp.disabled", "otp.disabled", "otp.disabled",
                                                             "two_factor.disabled"]
        # put back as it was (a refused disable's undo)
        assert (yield RestoreSecondFactor(uid, result.removed)) is Status.OK
        assert (yield LoadUser(uid)).otp == (OtpFactor("email", "ann@example.com"),)

    run_sequence(store, mode, sequence)


def test_one_removal_of_a_users_factors_is_in_flight_at_a_time(store: RecordStore, mode: str) -> None:
    """R8-2: a removal that its flow may still undo holds the user's factor-change lease from its commit
    until it is settled; every other removal of the user meanwhile (disable, disable-otp, removing
    an app, the last or not) is BUSY and writes nothing, so that no undo puts back over another
    removal. Another user's removals are not held. An administrator's reset clears the lease: an
    undo still in flight then puts nothing back over the reset (CHANGED)."""
    uid, other = new_id(), new_id()
    email = ("email", "ann@example.com", T)

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        yield from _add_app(uid, "f2")
        assert (yield ReplaceBackupCodes(uid, ["h1"], "k1", T)) == 1
        assert (yield EnableOtp(uid, *email)) is Status.CREATED
        assert (yield EnableOtp(other, "email", "bob@example.com", T)) is Status.CREATED
        held = yield DisableOtp(uid, "email", T)
        assert held == OtpRemoval(Status.OK, False, gone=(email,), lease=2)  # f2's confirmation took the 1st
        assert (yield DisableSecondFactor(uid, T + 1)) is None
        assert (yield RemoveAuthenticator(uid, "f2", T + 1)) == AuthenticatorRemoval(Status.BUSY, False)
        assert (yield RemoveAuthenticator(uid, "nope", T + 1)) == AuthenticatorRemoval(Status.BUSY, False)
        assert (yield DisableOtp(uid, None, T + 1)) == OtpRemoval(Status.BUSY, False)
        record = yield LoadUser(uid)
        assert ([f.id for f in record.totp], record.backup_codes, record.otp) == (["f1", "f2"], 1, ())
        assert (yield DisableOtp(other, None, T + 1)).status is Status.OK  # not the same user
        # the undo settles it: the lease goes in its transaction, and a disable goes through
        assert (yield RestoreOtp(uid, held.gone, held.lease)).status is Status.OK
        removed = yield DisableSecondFactor(uid, T + 2)
        assert removed is not None and removed.lease == 3 and removed.otp == (email,)
        assert [f.id for f in removed.totp] == ["f1", "f2"]
        # an administrator's reset meanwhile clears the lease: the undo puts nothing back over it
        assert (yield RemoveSecondFactor(uid, T + 3, passkeys=True)) is Status.NOT_FOUND  # nothing left to remove
        assert (yield RestoreSecondFactor(uid, removed)) is Status.CHANGED
        record = yield LoadUser(uid)
        assert (record.totp, record.backup_codes, record.otp, record.two_factor_enabled) == ((), 0, (), False)

    run_sequence(store, mode, sequence)


def test_a_generation_stages_and_activates_codes_only_while_2fa_is_on(store: RecordStore, mode: str) -> None:
    """R7-1: StageBackupCodes and ActivateBackupCodes with ``while_on`` write nothing (CHANGED) once
    no factor turns two-factor on: a disable committed after the flow's read leaves no codes."""
    uid = new_id()
    a, b = "a" * 32, "b" * 32

    def sequence() -> Sequence:
        assert (yield StageBackupCodes(uid, a, ["n1"], "k2", T, while_on=True)) is Status.CHANGED  # 2FA off
        assert (yield DiscardBackupCodes(uid, a)) is Status.NOT_FOUND  # nothing staged
        assert (yield EnableOtp(uid, "email", "ann@example.com", T)) is Status.CREATED
        assert (yield ReplaceBackupCodes(uid, ["h1"], "k1", T)) == 1
        assert (yield StageBackupCodes(uid, a, ["n1"], "k2", T, while_on=True)) is Status.OK
        assert (yield ActivateBackupCodes(uid, a, while_on=True)) is Status.OK
        assert (yield StageBackupCodes(uid, b, ["m1"], "k2", T, while_on=True)) is Status.OK
        # The last factor goes without the codes (a bare RemoveOtp): the staged set is not activated.
        assert (yield RemoveOtp(uid)) == (("email", "ann@example.com", T),)
        assert (yield ActivateBackupCodes(uid, b, while_on=True)) is Status.CHANGED
        record = yield LoadUser(uid)
        assert (record.two_factor_enabled, record.backup_codes, record.codes_key_id) == (False, 1, "k2")
        assert (yield ConsumeBackupCode(uid, ["m1"])).status is Status.NOT_FOUND  # still staged, no code
        assert (yield DiscardBackupCodes(uid, b)) is Status.OK

    run_sequence(store, mode, sequence)


def test_an_undo_after_its_lease_ran_out_and_was_taken_puts_nothing_back(store: RecordStore, mode: str) -> None:
    """A removal whose request stalled (or died) after its commit holds the lease until it runs out
    (``REMOVAL_LEASE_MS``: a removal at its last millisecond is still BUSY); then the next removal
    takes a new one, and the stalled removal's undo finds its lease gone and puts nothing back
    (CHANGED): the later removal, which said "off", stands (R7-2). RestoreOtp also writes nothing
    once no factor turns two-factor on: only a removal that takes no lease (RemoveOtp) can still
    turn it off under another's undo."""
    uid, other = new_id(), new_id()
    stopped, off = [AuditEntry("otp.disabled", T)], [AuditEntry("two_factor.disabled", T)]
    sms = ("sms", "+15551234567", T)

    def sequence() -> Sequence:
        assert (yield EnableOtp(uid, "email", "ann@example.com", T)) is Status.CREATED
        assert (yield EnableOtp(uid, *sms)) is Status.CREATED
        stalled = yield DisableOtp(uid, "sms", T, stopped, off)
        assert stalled == OtpRemoval(Status.OK, False, gone=(sms,), lease=1)
        assert (yield DisableOtp(uid, "email", T + REMOVAL_LEASE_MS, stopped, off)).status is Status.BUSY
        result = yield DisableOtp(uid, "email", T + REMOVAL_LEASE_MS + 1, stopped, off)  # the last factor: 2FA off
        assert (result.status, result.two_factor_off, result.lease) == (Status.OK, True, 2)
        restore = RestoreOtp(uid, stalled.gone, stalled.lease, {"sms": [AuditEntry("otp.enabled", T)]})
        assert (yield restore) == OtpRestore(Status.CHANGED)
        record = yield LoadUser(uid)
        assert (record.otp, record.two_factor_enabled) == ((), False)
        assert [e.type for e in (yield ListAudit(uid))] == ["otp.disabled", "two_factor.disabled"]
        assert (yield EndRemoval(uid, result.lease)) is Status.OK  # the later removal's lease is its own
        # a lease that ran out untaken is still its removal's: a late undo puts the rows back
        assert (yield EnableOtp(other, "email", "bob@example.com", T)) is Status.CREATED
        assert (yield EnableOtp(other, *sms)) is Status.CREATED
        late = yield DisableOtp(other, "sms", T, stopped, off)
        assert (yield RestoreOtp(other, late.gone, late.lease)).status is Status.OK
        # R7-2's rule: a removal without a lease (RemoveOtp) turned 2FA off under the undo
        late = yield DisableOtp(other, "sms", T, stopped, off)
        assert (yield RemoveOtp(other)) == (("email", "bob@example.com", T),)
        assert (yield RestoreOtp(other, late.gone, late.lease)).status is Status.CHANGED
        assert (yield LoadUser(other)).otp == ()
        assert (yield EndRemoval(other, late.lease)) is Status.NOT_FOUND  # released by the undo all the same

    run_sequence(store, mode, sequence)


def test_an_app_confirmation_and_a_passkey_registration_hold_the_factor_change_lease(
        store: RecordStore, mode: str) -> None:
    """R9-1, R9-2: the additions a flow may undo after their commit (an app added while 2FA is on,
    confirmed by its first code; a passkey's registration) hold the factor-change lease as a
    removal does: BUSY while another change's lease is live (nothing written), and while theirs is
    live every removal (and every other such addition) is BUSY; their undo (RemoveTotpFactor,
    RemovePasskey with the lease) releases it in its own transaction, EndRemoval once the re-check
    passed. A confirmation of nothing takes no lease; a registration the unique key refuses is
    rolled back with its lease; a registration with two-factor off takes none (R10-3)."""
    uid, stranger = new_id(), new_id()
    cred, cred2, cred3 = new_id("cred"), new_id("cred"), new_id("cred")
    added = [AuditEntry("two_factor.authenticator_added", T)]

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        assert (yield EnableOtp(uid, "email", "ann@example.com", T)) is Status.CREATED
        assert (yield AddAuthenticator(uid, "tab", "ct-tab", "k1", T, "Tablet", 10, 0)) is Status.CREATED
        # A removal in flight: the confirmation and the registration write nothing.
        held = yield DisableOtp(uid, "email", T)
        assert (held.status, held.lease) == (Status.OK, 1)
        assert (yield ConfirmAuthenticator(uid, "tab", "ct-tab", STEP, T + 1, added)) == LeasedChange(Status.BUSY)
        assert (yield RegisterPasskey(_passkey(uid, cred), T + 1)) == LeasedChange(Status.BUSY)
        assert (yield ListPasskeys(uid)) == ()
        assert [(f.id, f.confirmed_at) for f in (yield LoadUser(uid)).totp] == [("f1", T), ("tab", None)]
        assert (yield RestoreOtp(uid, held.gone, held.lease)).status is Status.OK
        # Confirmed: it holds the lease until settled (a second confirmation meets it).
        confirmed = yield ConfirmAuthenticator(uid, "tab", "ct-tab", STEP, T + 2, added)
        assert confirmed == LeasedChange(Status.ACCEPTED, 2)
        assert (yield ConfirmAuthenticator(uid, "tab", "ct-tab", STEP, T + 2)) == LeasedChange(Status.BUSY)
        assert (yield RemoveAuthenticator(uid, "f1", T + 3)) == AuthenticatorRemoval(Status.BUSY, False)
        assert (yield DisableSecondFactor(uid, T + 3)) is None
        assert (yield DisableOtp(uid, "email", T + 3)) == OtpRemoval(Status.BUSY, False)
        assert (yield RegisterPasskey(_passkey(uid, cred), T + 3)) == LeasedChange(Status.BUSY)
        record = yield LoadUser(uid)
        assert ([f.id for f in record.totp], record.otp, record.passkeys) == (["f1", "tab"], (
            OtpFactor("email", "ann@example.com"),), 0)
        # Its undo removes the app and releases the lease, in one transaction; once.
        assert (yield RemoveTotpFactor(uid, "tab", lease=confirmed.lease)) is Status.OK
        assert (yield RemoveTotpFactor(uid, "tab", lease=confirmed.lease)) is Status.NOT_FOUND
        assert (yield EndRemoval(uid, confirmed.lease)) is Status.NOT_FOUND
        assert [f.id for f in (yield LoadUser(uid)).totp] == ["f1"]
        assert (yield ConfirmAuthenticator(uid, "tab", "ct-tab", STEP, T + 4)) == LeasedChange(Status.NOT_FOUND)
        # A registration holds it the same way; its re-check passed: EndRemoval.
        registered = yield RegisterPasskey(_passkey(uid, cred), T + 4, [AuditEntry("passkey.registered", T)])
        assert registered == LeasedChange(Status.CREATED, 3)
        assert (yield RemoveAuthenticator(uid, "f1", T + 5)).status is Status.BUSY
        assert (yield EndRemoval(uid, registered.lease)) is Status.OK
        # The unique key refuses another user's registration of it: rolled back, its lease too.
        assert (yield RegisterPasskey(_passkey(stranger, cred), T + 5)) == LeasedChange(Status.TAKEN)
        # With two-factor off a registration takes no lease (R10-3): token 0, the counter unmoved,
        # and a second one at once is not refused.
        assert (yield RegisterPasskey(_passkey(stranger, cred3), T + 5)) == LeasedChange(Status.CREATED, 0)
        assert (yield RegisterPasskey(_passkey(stranger, new_id("cred")), T + 5)) == LeasedChange(Status.CREATED, 0)
        # A refused registration's undo removes its passkey and releases its lease.
        again = yield RegisterPasskey(_passkey(uid, cred2), T + 6)
        assert again == LeasedChange(Status.CREATED, 4)
        assert (yield RemovePasskey(uid, cred2, lease=again.lease)) is Status.OK
        assert (yield EndRemoval(uid, again.lease)) is Status.NOT_FOUND  # released by the undo
        assert [p.credential_id for p in (yield ListPasskeys(uid))] == [cred]
        assert (yield DisableOtp(uid, "email", T + 7)).status is Status.OK  # nothing held

    run_sequence(store, mode, sequence)


def test_a_confirmations_undo_whose_lease_went_keeps_the_app_only_while_it_is_the_last(
        store: RecordStore, mode: str) -> None:
    """An app's confirmation whose request stalled past its lease: a removal the app kept from
    being the last (R9-1's case) went through after the lease ran out, so the undo, its lease not
    its own any more, leaves the app (CHANGED): two-factor must not go off unsaid. When another
    factor still turns two-factor on (an administrator's enable_otp cleared the lease), the undo
    removes the app all the same."""
    uid, other = new_id(), new_id()

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        assert (yield AddAuthenticator(uid, "tab", "ct-tab", "k1", T, "Tablet", 10, 0)) is Status.CREATED
        stalled = yield ConfirmAuthenticator(uid, "tab", "ct-tab", STEP, T)
        assert stalled.status is Status.ACCEPTED
        assert (yield RemoveAuthenticator(uid, "f1", T + REMOVAL_LEASE_MS)).status is Status.BUSY
        assert (yield RemoveAuthenticator(uid, "f1", T + REMOVAL_LEASE_MS + 1)) == AuthenticatorRemoval(
            Status.OK, False)  # not the last: the tablet
        assert (yield RemoveTotpFactor(uid, "tab", lease=stalled.lease)) is Status.CHANGED
        record = yield LoadUser(uid)
        assert ([f.id for f in record.totp], record.two_factor_enabled) == (["tab"], True)
        # Another factor remains: the stale undo takes the app back.
        yield from _enrolled(other)
        assert (yield AddAuthenticator(other, "tab", "ct-tab", "k1", T, "Tablet", 10, 0)) is Status.CREATED
        held = yield ConfirmAuthenticator(other, "tab", "ct-tab", STEP, T)
        assert held == LeasedChange(Status.ACCEPTED, 1)
        assert (yield EnableOtp(other, "email", "bob@example.com", T + 1, supersede=True)) is Status.CREATED
        assert (yield RemoveTotpFactor(other, "tab", lease=held.lease)) is Status.OK
        assert [f.id for f in (yield LoadUser(other)).totp] == ["f1"]

    run_sequence(store, mode, sequence)


def test_an_administrators_import_or_enable_otp_clears_the_lease(store: RecordStore, mode: str) -> None:
    """R9-3: an administrator's change of the factors (an import, EnableTotp(replace); the app's
    enable_otp, EnableOtp(supersede)) clears the factor-change lease and moves its counter on, as
    a reset does: the undo of a user's change still in flight puts nothing back over it."""
    uid, other = new_id(), new_id()

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        assert (yield EnableOtp(uid, "email", "ann@example.com", T)) is Status.CREATED
        assert (yield ReplaceBackupCodes(uid, ["h1"], "k1", T)) == 1
        held = yield DisableSecondFactor(uid, T)
        assert held is not None and held.lease == 1
        assert (yield EnableTotp(uid, "totp", "ct-new", "k1", T + 1, 0, ["n1", "n2"], "k1", replace=True)) \
            is Status.CREATED
        assert (yield RestoreSecondFactor(uid, held)) is Status.CHANGED
        record = yield LoadUser(uid)
        assert ([f.id for f in record.totp], record.otp, record.backup_codes) == (["totp"], (), 2)
        again = yield DisableSecondFactor(uid, T + 2)  # nothing held: the import cleared it
        assert again is not None and again.lease == 3  # the take, the import's clear, this take
        # enable_otp in a disable-otp's window: its address stands, the removed one stays removed
        yield from _enrolled(other)
        assert (yield EnableOtp(other, "email", "bob@example.com", T)) is Status.CREATED
        gone = yield DisableOtp(other, "email", T)
        assert (gone.status, gone.lease) == (Status.OK, 1)
        assert (yield EnableOtp(other, "sms", "+15551234567", T + 1, supersede=True)) is Status.CREATED
        assert (yield RestoreOtp(other, gone.gone, gone.lease)) == OtpRestore(Status.CHANGED)
        assert (yield LoadUser(other)).otp == (OtpFactor("sms", "+15551234567"),)
        assert (yield DisableOtp(other, "sms", T + 2)).lease == 3

    run_sequence(store, mode, sequence)


def test_a_change_of_nothing_writes_no_lease_and_tokens_never_repeat(store: RecordStore, mode: str) -> None:
    """R9-5: after a stalled removal's lease ran out, requests that change nothing (an unknown app,
    a channel without an address, a disable or a confirmation of nothing) write nothing, the lease
    neither: the stalled removal's undo still puts everything back. R9-6: a lease taken at the same
    millisecond as a lease a reset cleared has another token, so the old undo does not own it.
    R9-4: an undo puts back the channels still free and keeps one enrolled again."""
    uid, other, third = new_id(), new_id(), new_id()
    email = ("email", "ann@example.com", T)

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        assert (yield EnableOtp(uid, *email)) is Status.CREATED
        stalled = yield DisableSecondFactor(uid, T)
        assert stalled is not None and stalled.lease == 1
        late = T + REMOVAL_LEASE_MS + 1
        assert (yield RemoveAuthenticator(uid, "nope", late)) == AuthenticatorRemoval(Status.NOT_FOUND, False)
        assert (yield DisableOtp(uid, None, late)) == OtpRemoval(Status.NOT_FOUND, False)
        assert (yield DisableSecondFactor(uid, late)) is None
        assert (yield ConfirmAuthenticator(uid, "f1", "ct-1", STEP, late)) == LeasedChange(Status.NOT_FOUND)
        assert (yield RestoreSecondFactor(uid, stalled)) is Status.OK
        record = yield LoadUser(uid)
        assert ([f.id for f in record.totp], record.otp) == (["f1"], (OtpFactor("email", "ann@example.com"),))
        # R9-6: the same millisecond after a reset.
        sms = ("sms", "+15551234567", T)
        assert (yield EnableOtp(other, *email)) is Status.CREATED
        assert (yield EnableOtp(other, *sms)) is Status.CREATED
        a = yield DisableOtp(other, "email", T)
        assert (a.status, a.lease) == (Status.OK, 1)
        assert (yield RemoveSecondFactor(other, T, passkeys=True)) is Status.OK
        yield from _enrolled(other)
        assert (yield EnableOtp(other, "sms", "+15557654321", T)) is Status.CREATED
        b = yield DisableOtp(other, "sms", T)
        assert (b.status, b.lease) == (Status.OK, 3)
        assert (yield RestoreOtp(other, a.gone, a.lease)) == OtpRestore(Status.CHANGED)
        assert (yield LoadUser(other)).otp == ()
        assert (yield EndRemoval(other, b.lease)) is Status.OK
        # R9-4: one channel enrolled again, the other put back, each audited as it was.
        yield from _enrolled(third)
        assert (yield EnableOtp(third, *email)) is Status.CREATED
        assert (yield EnableOtp(third, *sms)) is Status.CREATED
        both = yield DisableOtp(third, None, T)
        assert (both.status, both.gone) == (Status.OK, (email, sms))
        assert (yield EnableOtp(third, "sms", "+15557654321", T + 1)) is Status.CREATED
        audit = {channel: [AuditEntry("otp.enabled", T, detail={"detail": f"{channel}:restored"})]
                 for channel in ("email", "sms")}
        assert (yield RestoreOtp(third, both.gone, both.lease, audit)) == OtpRestore(Status.OK, ("email",), ("sms",))
        assert (yield LoadUser(third)).otp == (OtpFactor("email", "ann@example.com"),
                                                OtpFactor("sms", "+15557654321"))
        assert [(e.type, e.detail) for e in (yield ListAudit(third))] == [("otp.enabled", {"detail": "email:restored"})]
        assert (yield DisableOtp(third, "email", T + 2)).status is Status.OK  # released by the undo

    run_sequence(store, mode, sequence)


def test_an_enrolment_begun_with_2fa_off_writes_nothing_once_a_factor_exists(store: RecordStore, mode: str) -> None:
    """R6-1: EnableOtp(while_off) adds the address only while the user has no second factor."""
    uid, other = new_id(), new_id()

    def sequence() -> Sequence:
        assert (yield EnableOtp(uid, "email", "ann@example.com", T, while_off=True)) is Status.CREATED
        assert (yield EnableOtp(uid, "sms", "+15551234567", T, while_off=True)) is Status.CHANGED
        assert (yield EnableTotp(other, "totp", "ct", "k", T, 1, [], "")) is Status.CREATED
        assert (yield EnableOtp(other, "email", "bob@example.com", T, while_off=True)) is Status.CHANGED
        assert (yield LoadUser(other)).otp == ()
        assert (yield EnableOtp(other, "email", "bob@example.com", T)) is Status.CREATED  # 2FA on: no such rule

    run_sequence(store, mode, sequence)


def test_backup_codes_are_single_use_and_replaced_as_a_set(store: RecordStore, mode: str) -> None:
    uid, other = new_id(), new_id()

    def sequence() -> Sequence:
        assert (yield ReplaceBackupCodes(uid, ["h1", "h2", "h3", "h3"], "k1", T)) == 3
        assert (yield ReplaceBackupCodes(other, ["h1"], "k1", T)) == 1
        assert (yield RecordFailure(uid, 100, T)).streak == 1
        used = yield ConsumeBackupCode(uid, ["h1-under-old-key", "h1"], audit=[AuditEntry("backup_code.used", T)])
        assert used == BackupCodeUse(Status.CONSUMED, 2)
        assert (yield LoadUser(uid)).failure_streak == 0  # a success ends the streak
        assert (yield ConsumeBackupCode(uid, ["h1"], audit=[AuditEntry("backup_code.used", T)])) == \
            BackupCodeUse(Status.NOT_FOUND, 2)
        assert (yield ConsumeBackupCode(uid, [])) == BackupCodeUse(Status.NOT_FOUND, 2)
        assert (yield ConsumeBackupCode(other, ["h1"])).status is Status.CONSUMED  # the other user's own
        assert (yield ReplaceBackupCodes(uid, ["n1", "n2"], "k2", T)) == 2
        assert (yield ConsumeBackupCode(uid, ["h2"])).status is Status.NOT_FOUND  # the old set is gone
        assert (yield ConsumeBackupCode(uid, ["n2"])) == BackupCodeUse(Status.CONSUMED, 1)
        assert [e.type for e in (yield ListAudit(uid))] == ["backup_code.used"]

    run_sequence(store, mode, sequence)


def _passkey(uid: str, credential_id: str, sign_count: int = 0) -> Passkey:
    return Passkey(credential_id, uid, "cose-key", sign_count, ("internal", "hybrid"), "multi_device", True,
                   "Laptop", "00000000-0000-0000-0000-000000000000", T)


def test_passkeys_register_once_and_the_sign_count_only_moves_forward(store: RecordStore, mode: str) -> None:
    uid, other = new_id(), new_id()
    long_id = new_id("A" * 1349)  # ~1023-byte credential id in base64url: longer than MariaDB can index
    cred2 = new_id("cred")

    def sequence() -> Sequence:
        assert (yield AddPasskey(_passkey(uid, long_id), audit=[AuditEntry("passkey.added", T)])) is Status.CREATED
        assert (yield AddPasskey(_passkey(other, long_id), audit=[AuditEntry("passkey.added", T)])) is Status.TAKEN
        assert (yield AddPasskey(replace(_passkey(uid, cred2, 7), user_verified=True))) is Status.CREATED
        assert (yield GetPasskey(long_id)) == _passkey(uid, long_id)
        assert (yield GetPasskey(cred2)).user_verified is True
        assert (yield GetPasskey("unknown")) is None
        # A counter-less authenticator (always 0) is accepted; once it counts, it must count up.
        assert (yield AdvanceSignCount(uid, long_id, 0, T + 1)) is Status.ACCEPTED
        used, cloned = [AuditEntry("passkey.authenticated", T)], [AuditEntry("passkey.clone_suspected", T)]
        assert (yield AdvanceSignCount(uid, long_id, 5, T + 2, used, cloned)) is Status.ACCEPTED
        assert (yield AdvanceSignCount(uid, long_id, 5, T + 3, used, cloned)) is Status.REGRESSED
        assert (yield AdvanceSignCount(uid, long_id, 0, T + 3)) is Status.REGRESSED
        assert (yield AdvanceSignCount(other, long_id, 9, T + 3)) is Status.NOT_FOUND  # not theirs
        stored = yield GetPasskey(long_id)
        assert (stored.sign_count, stored.last_used_at) == (5, T + 2)
        assert (yield RenamePasskey(uid, cred2, "Phone")) is Status.OK
        assert (yield RenamePasskey(other, cred2, "Mine")) is Status.NOT_FOUND
        assert {p.name for p in (yield ListPasskeys(uid))} == {"Phone", "Laptop"}
        assert (yield RemovePasskey(other, cred2)) is Status.NOT_FOUND
        assert (yield RemovePasskey(uid, cred2, audit=[AuditEntry("passkey.removed", T)])) is Status.OK
        assert (yield LoadUser(uid)).passkeys == 1
        assert [e.type for e in (yield ListAudit(uid))] == ["passkey.added", "passkey.authenticated",
                                                            "passkey.clone_suspected", "passkey.removed"]
        assert (yield ListAudit(other)) == ()

    run_sequence(store, mode, sequence)


def test_a_passkey_signs_in_nobody_under_the_permanent_lock(store: RecordStore, mode: str) -> None:
    """R4-5: the lock is part of AdvanceSignCount's conditional UPDATE (the hot store's copy of the
    lock may be missing): LOCKED, the count not moved, no audit row; after an unlock it counts again."""
    uid, cred, zero = new_id(), new_id("cred"), new_id("zero")

    def sequence() -> Sequence:
        assert (yield AddPasskey(_passkey(uid, cred, 3))) is Status.CREATED
        assert (yield AddPasskey(_passkey(uid, zero, 0))) is Status.CREATED
        assert (yield RecordFailure(uid, 1, T)).locked is True
        used = [AuditEntry("passkey.authenticated", T)]
        assert (yield AdvanceSignCount(uid, cred, 4, T + 1, used)) is Status.LOCKED
        assert (yield AdvanceSignCount(uid, zero, 0, T + 1, used)) is Status.LOCKED  # a counter-less one too
        assert (yield AdvanceSignCount(uid, new_id("gone"), 4, T + 1, used)) is Status.NOT_FOUND
        stored = yield GetPasskey(cred)
        assert (stored.sign_count, stored.last_used_at) == (3, None)
        assert (yield ListAudit(uid)) == ()
        assert (yield Unlock(uid)) is Status.OK
        assert (yield AdvanceSignCount(uid, cred, 4, T + 2, used)) is Status.ACCEPTED

    run_sequence(store, mode, sequence)


def test_the_failure_ceiling_locks_until_an_admin_unlocks(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        lock_event = [AuditEntry("user.locked", T)]
        assert (yield RecordFailure(uid, 3, T, audit_on_lock=lock_event)).locked is False
        assert (yield AcceptTotpStep(uid, "f1", "ct-1", STEP + 1)) is Status.ACCEPTED  # ends the streak
        for expected in (1, 2):
            assert (yield RecordFailure(uid, 3, T, audit_on_lock=lock_event)).streak == expected
        third = yield RecordFailure(uid, 3, T + 7, audit_on_lock=lock_event)
        assert (third.streak, third.locked) == (3, True)
        assert (yield RecordFailure(uid, 3, T + 8, audit_on_lock=lock_event)).locked is True
        # A success does not lift the permanent lock (the flows refuse before verifying anyway).
        assert (yield AcceptTotpStep(uid, "f1", "ct-1", STEP + 2)) is Status.ACCEPTED
        assert (yield LoadUser(uid)).locked_at == T + 7
        assert (yield Unlock(uid, audit=[AuditEntry("user.unlocked", T)])) is Status.OK
        record = yield LoadUser(uid)
        assert (record.locked_at, record.failure_streak) == (None, 0)
        assert (yield Unlock(new_id())) is Status.NOT_FOUND
        assert [e.type for e in (yield ListAudit(uid))] == ["user.locked", "user.unlocked"]

    run_sequence(store, mode, sequence)


def test_revoking_sessions_bumps_the_generation(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        assert (yield LoadUser(uid)).generation == 0
        assert (yield RevokeSessions(uid, T, audit=[AuditEntry("session.revoked", T)])) == 1
        assert (yield RevokeSessions(uid, T + 5)) == 2
        record = yield LoadUser(uid)
        assert (record.generation, record.revoked_at) == (2, T + 5)

    run_sequence(store, mode, sequence)


def test_audit_is_append_only_with_retention_by_age(store: RecordStore, mode: str) -> None:
    uid = new_id()
    detail = {"method": "totp", "name": "Café ☕"}

    def sequence() -> Sequence:
        entries = [AuditEntry("sign_in.failed", T - 10_000, "203.0.113.9", "Firefox", "sid-hash", detail),
                   AuditEntry("sign_in", T, "203.0.113.9", "Firefox")]
        assert (yield AppendAudit(uid, entries)) == 2
        events = yield ListAudit(uid)
        assert [(e.type, e.at, e.ip, e.user_agent, e.session_id, e.detail) for e in events] == [
            ("sign_in.failed", T - 10_000, "203.0.113.9", "Firefox", "sid-hash", detail),
            ("sign_in", T, "203.0.113.9", "Firefox", "", {})]
        assert events[0].id < events[1].id
        assert (yield ListAudit(uid, after=events[0].id)) == events[1:]
        pruned = yield PruneAudit(before=T - 5_000)
        assert pruned >= 1
        assert [e.type for e in (yield ListAudit(uid))] == ["sign_in"]

    run_sequence(store, mode, sequence)


@pytest.mark.parametrize("prefix", ["app_mfa_"])
def test_tables_carry_the_configured_prefix(backend: str, scratch_url: str, prefix: str) -> None:
    from sqlalchemy import inspect

    store = RecordStore(scratch_url, prefix=prefix)
    try:
        store.upgrade()
        names = set(inspect(store.engine).get_table_names())
        assert names == {f"{prefix}{n}" for n in ("accounts", "user_state", "audit_events", "totp_factors",
                                                  "backup_codes", "passkeys", "otp_factors", "delivery_cursors",
                                                  "dead_letters", "alembic_version")}
        assert store.execute(RevokeSessions("u", T)) == 1
    finally:
        store.dispose()


def test_taking_a_factor_away_moves_the_generation_on(store: RecordStore, mode: str) -> None:
    """A second factor taken away while two-factor stays on (a confirmed app removed, a channel
    removed, a channel's address replaced) moves the generation on in its own transaction: the hot
    copy, repaired from it, forgets every trusted device even when the flow's hot step never ran
    (R11-B, C, D). Re-enrolling the same address, or cancelling an unfinished app, moves nothing."""
    uid = new_id()

    def generation() -> Sequence:
        return (yield LoadUser(uid)).generation

    def sequence() -> Sequence:
        yield from _enrolled(uid)
        yield from _add_app(uid, "f2")
        assert (yield EnableOtp(uid, "email", "ann@example.com", T)) is Status.CREATED
        start = yield from generation()
        assert (yield EnableOtp(uid, "email", "ann@example.com", T)) is Status.OK  # the same address
        assert (yield from generation()) == start
        assert (yield EnableOtp(uid, "email", "ann@work.example", T)) is Status.OK  # another one
        assert (yield from generation()) == start + 1
        assert (yield AddAuthenticator(uid, "f3", "ct-f3", "k1", T, "f3", 10, 0)) is Status.CREATED
        assert (yield RemoveAuthenticator(uid, "f3", T)).status is Status.OK  # never confirmed
        assert (yield from generation()) == start + 1
        assert (yield RemoveAuthenticator(uid, "f2", T)).status is Status.OK  # confirmed, f1 stays
        assert (yield from generation()) == start + 2
        removed = yield DisableOtp(uid, "email", T)
        assert (removed.status, removed.two_factor_off) == (Status.OK, False)
        assert (yield from generation()) == start + 3
        assert (yield RestoreOtp(uid, removed.gone, removed.lease)).status is Status.OK  # undone: not back
        assert (yield from generation()) == start + 3

    run_sequence(store, mode, sequence)

"""The operations the second-factor flows run (Flows.verify, enable, import, disable, rotation), on
SQLite, PostgreSQL and MariaDB, with the sync and the async engine: an enrolment written whole in
one transaction, a verification's one write (the consume or the failure, never both), rotation's
listing, and a user's disable that leaves the sessions be."""

from __future__ import annotations

from records_support import Sequence, new_id, run_sequence

from banata_middleware.stores.records import (
    AcceptTotpStep,
    AuditEntry,
    ConsumeBackupCode,
    EnableTotp,
    ListAudit,
    ListTotpSecrets,
    LoadUser,
    Proof,
    ProveSecondFactor,
    RecordFailure,
    RecordStore,
    RemoveSecondFactor,
    RevokeSessions,
    Status,
)

T = 1_800_000_000_000
STEP = 60_000_000


def _enable(uid: str, secret: str = "ct-1", codes: tuple[str, ...] = ("h1", "h2"), *, replace: bool = False,
            key_id: str = "k1") -> EnableTotp:
    return EnableTotp(uid, "totp", secret, key_id, T, STEP, codes, "c1" if codes else "", replace=replace,
                      audit=[AuditEntry("two_factor.enabled", T)])


def _failure(uid: str, ceiling: int = 100) -> RecordFailure:
    return RecordFailure(uid, ceiling, T, [AuditEntry("two_factor.locked", T, detail={"detail": "ceiling"})])


def test_enable_writes_a_confirmed_factor_and_its_codes_at_once(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        assert (yield _enable(uid)) is Status.CREATED
        record = yield LoadUser(uid)
        assert record.two_factor_enabled and record.totp[0].last_step == STEP
        assert record.generation == 0  # an enrolment's hot half ends the sessions; SQL's generation stays
        assert (record.backup_codes, record.codes_key_id) == (2, "c1")
        # the code that confirmed it cannot be used again
        assert (yield AcceptTotpStep(uid, "totp", "ct-1", STEP)) is Status.REPLAYED
        # a second enrolment writes nothing (its codes neither)
        assert (yield _enable(uid, "ct-2", ("h3",))) is Status.TAKEN
        record = yield LoadUser(uid)
        assert ([f.secret for f in record.totp], record.backup_codes) == (["ct-1"], 2)
        # an import replaces the factor, its replay state and the codes, and moves the generation on
        # (devices trusted under the old secret are void even if the copy's update fails: R4-10)
        assert (yield _enable(uid, "ct-3", (), replace=True)) is Status.CREATED
        record = yield LoadUser(uid)
        assert ([f.secret for f in record.totp], record.backup_codes, record.codes_key_id) == (["ct-3"], 0, "")
        assert record.generation == 1
        assert [e.type for e in (yield ListAudit(uid))] == ["two_factor.enabled", "two_factor.enabled"]

    run_sequence(store, mode, sequence)


def test_a_proof_consumes_or_counts_a_failure_never_both(store: RecordStore, mode: str) -> None:
    uid = new_id()
    verified = [AuditEntry("two_factor.verified", T)]

    def sequence() -> Sequence:
        assert (yield _enable(uid)) is Status.CREATED
        ok = yield ProveSecondFactor(AcceptTotpStep(uid, "totp", "ct-1", STEP + 1, verified), _failure(uid))
        assert ok == Proof(Status.ACCEPTED, 0, None) and ok.ok
        replayed = yield ProveSecondFactor(AcceptTotpStep(uid, "totp", "ct-1", STEP + 1, verified), _failure(uid))
        assert (replayed.status, replayed.failure and replayed.failure.streak) == (Status.REPLAYED, 1)
        wrong = yield ProveSecondFactor(None, _failure(uid))
        assert (wrong.ok, wrong.failure and wrong.failure.streak) == (False, 2)
        unknown = yield ProveSecondFactor(ConsumeBackupCode(uid, ["nope"]), _failure(uid))
        assert (unknown.status, unknown.failure and unknown.failure.streak) == (Status.NOT_FOUND, 3)
        used = yield ProveSecondFactor(ConsumeBackupCode(uid, ["h1"], verified), _failure(uid))
        assert used == Proof(Status.CONSUMED, 1, None)
        assert (yield LoadUser(uid)).failure_streak == 0  # a success ends the streak
        # a secret replaced meanwhile is no wrong guess: nothing counted
        changed = yield ProveSecondFactor(AcceptTotpStep(uid, "totp", "ct-old", STEP + 9), _failure(uid))
        assert (changed.status, changed.failure) == (Status.CHANGED, None)
        assert [e.type for e in (yield ListAudit(uid))] == ["two_factor.enabled", "two_factor.verified",
                                                            "two_factor.verified"]

    run_sequence(store, mode, sequence)


def test_the_ceiling_is_reached_through_proofs_and_audited_once(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        assert (yield _enable(uid)) is Status.CREATED
        for n in range(1, 4):
            proof = yield ProveSecondFactor(None, _failure(uid, ceiling=3))
            assert proof.failure is not None and (proof.failure.streak, proof.failure.locked) == (n, n == 3)
        assert (yield LoadUser(uid)).locked_at == T
        # a user's disable lifts nothing of the sessions, an admin's reset ends them (and the lock)
        assert (yield RemoveSecondFactor(uid, T + 1, end_sessions=False)) is Status.OK
        record = yield LoadUser(uid)
        assert (record.locked_at, record.generation, record.revoked_at, record.failure_streak) == (None, 0, None, 0)
        assert (yield RevokeSessions(uid, T + 2)) == 1
        assert [e.type for e in (yield ListAudit(uid))] == ["two_factor.enabled", "two_factor.locked"]

    run_sequence(store, mode, sequence)


def test_a_backup_code_that_leaves_few_writes_the_low_codes_event_with_it(store: RecordStore, mode: str) -> None:
    """The "2 or fewer backup codes left" notice is written in the consume's transaction, from the
    count it reads anyway: only by a code that was used, and only once the set is that low."""
    uid = new_id()
    used = [AuditEntry("two_factor.backup_code_used", T)]
    low = [AuditEntry("backup_codes.low", T, "203.0.113.7", "Browser/1.0")]

    def consume(code: str) -> ConsumeBackupCode:
        return ConsumeBackupCode(uid, [code], used, 2, low)

    def sequence() -> Sequence:
        assert (yield _enable(uid, codes=("h1", "h2", "h3", "h4"))) is Status.CREATED
        assert (yield consume("h1")).remaining == 3  # 3 left: not low yet
        assert (yield consume("h1")).status is Status.NOT_FOUND  # used already: no event at all
        assert (yield consume("nope")).status is Status.NOT_FOUND
        assert (yield consume("h2")).remaining == 2
        assert (yield consume("h3")).remaining == 1
        events = yield ListAudit(uid)
        assert [e.type for e in events] == ["two_factor.enabled", "two_factor.backup_code_used",
                                            "two_factor.backup_code_used", "backup_codes.low",
                                            "two_factor.backup_code_used", "backup_codes.low"]
        assert (events[3].ip, events[3].user_agent) == ("203.0.113.7", "Browser/1.0")

    run_sequence(store, mode, sequence)


def test_a_failure_writes_its_own_rows_unless_it_reaches_the_ceiling(store: RecordStore, mode: str) -> None:
    """Codes by message: the hot store's temporary lock comes with the failure S2 counts; at the
    ceiling only the permanent lock's row is written (one notice, the one that says more)."""
    uid = new_id()
    temporary = [AuditEntry("two_factor.locked", T, detail={"detail": "temporary"})]

    def failure() -> RecordFailure:
        return RecordFailure(uid, 2, T, [AuditEntry("two_factor.locked", T, detail={"detail": "ceiling"})], temporary)

    def sequence() -> Sequence:
        assert not (yield failure()).locked
        assert (yield failure()).locked
        events = yield ListAudit(uid)
        assert [(e.type, e.detail) for e in events] == [("two_factor.locked", {"detail": "temporary"}),
                                                        ("two_factor.locked", {"detail": "ceiling"})]

    run_sequence(store, mode, sequence)


def test_rotation_lists_the_secrets_under_older_keys_page_by_page(store: RecordStore, mode: str) -> None:
    users = sorted(new_id() for _ in range(3))

    def sequence() -> Sequence:
        for uid, key in zip(users, ("old", "new", "old"), strict=True):
            assert (yield _enable(uid, f"ct-{uid}", key_id=key)) is Status.CREATED
        seen: list[str] = []
        after = ("", "")
        while True:
            page = yield ListTotpSecrets("new", after, limit=1)
            if not page:
                break
            seen += [f.user_id for f in page if f.user_id in users]
            after = (page[-1].user_id, page[-1].id)
        assert seen == [users[0], users[2]]

    run_sequence(store, mode, sequence)

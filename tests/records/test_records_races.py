"""Races with real concurrency on every backend: 20 threads on the sync engine (each with its own
pooled connection), or 20 coroutines under ``asyncio.gather`` on the async engine. Each decision
is one conditional statement, so exactly one caller wins however the server interleaves them."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from harness import one_worker_at_a_time
from records_support import new_id

from banata_middleware.stores.records import (
    AcceptTotpStep,
    Account,
    AddAuthenticator,
    AddPasskey,
    AdvanceSignCount,
    AuditEntry,
    ConfirmAuthenticator,
    ConsumeBackupCode,
    CreateAccount,
    EnableTotp,
    EndRemoval,
    GetPasskey,
    ListAudit,
    LoadUser,
    Passkey,
    RecordFailure,
    RecordOp,
    RecordStore,
    ReplaceBackupCodes,
    RevokeSessions,
    Status,
)

CALLERS = 20
T = 1_800_000_000_000
STEP = 60_000_000


@pytest.fixture(autouse=True, scope="module")
def _alone() -> Iterator[None]:
    """Twenty callers a race: never beside another worker's race module (PostgreSQL's connections)."""
    with one_worker_at_a_time("postgres-races"):
        yield


@pytest.fixture(params=["threads", "gather"])
def concurrency(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def race(store: RecordStore, concurrency: str, ops: list[RecordOp[Any]]) -> list[Any]:
    """Run ``ops`` at the same time; every reply (an exception would fail the test)."""
    if concurrency == "threads":
        start = threading.Barrier(len(ops))

        def call(op: RecordOp[Any]) -> Any:
            start.wait()
            return store.execute(op)

        with ThreadPoolExecutor(len(ops)) as pool:
            return list(pool.map(call, ops))

    async def gather() -> list[Any]:
        try:
            return list(await asyncio.gather(*(store.aexecute(op) for op in ops)))
        finally:
            await store.adispose()

    return asyncio.run(gather())


def _enrol(store: RecordStore, uid: str) -> None:
    """Two-factor on with an app confirmed by the code of ``STEP``, as the enable flow turns it on."""
    assert store.execute(EnableTotp(uid, "totp", "ct", "k1", T, STEP, [], "", while_off=True)) is Status.CREATED


def test_one_backup_code_is_consumed_by_exactly_one_of_20_callers(store: RecordStore, concurrency: str) -> None:
    uid = new_id()
    store.execute(ReplaceBackupCodes(uid, ["code-hash", "other"], "k1", T))
    replies = race(store, concurrency, [ConsumeBackupCode(uid, ["code-hash"], audit=[AuditEntry("backup_code.used", T)])
                                        for _ in range(CALLERS)])
    assert Counter(r.status for r in replies) == {Status.CONSUMED: 1, Status.NOT_FOUND: CALLERS - 1}
    assert {r.remaining for r in replies} == {1}
    assert len(store.execute(ListAudit(uid))) == 1  # one audit row: the winner's


def test_of_generations_activated_at_once_exactly_one_set_goes_into_use(store: RecordStore, concurrency: str) -> None:
    """generate-backup-codes' phase two, racing: 10 generations of one user, each with its own
    staged set, activate at the same time as 10 uses of an old code. Exactly one activation wins
    (its set is the user's whole set afterwards, audited once), every other one finds its set gone
    (CHANGED: that request answers 409 and shows no codes), and the old code is used at most once,
    and only before the winner voided it. No deadlock reaches the caller (all rows of the user are
    locked in one order)."""
    from banata_middleware.stores.records import ActivateBackupCodes, StageBackupCodes

    uid = new_id()
    half = CALLERS // 2
    store.execute(ReplaceBackupCodes(uid, ["old-1", "old-2"], "k1", T))
    tokens = [f"{i:032x}" for i in range(half)]
    for i, token in enumerate(tokens):
        assert store.execute(StageBackupCodes(uid, token, [f"new-{i}-a", f"new-{i}-b"], "k2", T)) is Status.OK
    ops: list[RecordOp[Any]] = []
    for i in range(half):
        ops.append(ActivateBackupCodes(uid, tokens[i], audit=[AuditEntry("two_factor.backup_codes_regenerated", T)]))
        ops.append(ConsumeBackupCode(uid, ["old-1"]))
    replies = race(store, concurrency, ops)
    activations = replies[0::2]
    assert Counter(activations) == {Status.OK: 1, Status.CHANGED: half - 1}
    winner = activations.index(Status.OK)
    assert Counter(r.status for r in replies[1::2])[Status.CONSUMED] <= 1
    record = store.execute(LoadUser(uid))
    assert (record.backup_codes, record.codes_key_id) == (2, "k2")
    for i in range(half):
        expected = Status.CONSUMED if i == winner else Status.NOT_FOUND
        assert store.execute(ConsumeBackupCode(uid, [f"new-{i}-a"])).status is expected, i
    assert store.execute(ConsumeBackupCode(uid, ["old-2"])).status is Status.NOT_FOUND
    assert [e.type for e in store.execute(ListAudit(uid))] == ["two_factor.backup_codes_regenerated"]


def test_of_removals_at_once_exactly_one_holds_the_lease_and_the_rest_write_nothing(
        store: RecordStore, concurrency: str) -> None:
    """R8-2: 20 removals of one user's factors at once (disable, and disable-otp of either
    channel: each keeps the factor-change lease when it removes anything, its flow may still undo it).
    The lease is taken by one conditional UPDATE under the user's locks: exactly one removal
    commits, every other one is BUSY (None for a disable) and writes nothing, whatever the
    order; and the winner's undo puts everything back."""
    from banata_middleware.stores.records import (
        DisabledSecondFactor,
        DisableOtp,
        DisableSecondFactor,
        EnableOtp,
        OtpRemoval,
        RestoreOtp,
        RestoreSecondFactor,
    )

    for round_ in range(3):
        uid = new_id()
        store.execute(EnableTotp(uid, "totp", "ct", "k1", T, STEP, ["h1", "h2"], "c1"))
        store.execute(EnableOtp(uid, "email", "ann@example.com", T))
        store.execute(EnableOtp(uid, "sms", "+15551234567", T))
        ops: list[RecordOp[Any]] = []
        for i in range(CALLERS):
            op: RecordOp[Any] = DisableSecondFactor(uid, T, [AuditEntry("two_factor.disabled", T)])
            if i % 4 in (1, 2):
                op = DisableOtp(uid, ("email", "sms")[i % 2], T, [AuditEntry("otp.disabled", T)])
            ops.append(op)
        replies = race(store, concurrency, ops)
        won = [r for r in replies if r is not None and (isinstance(r, DisabledSecondFactor) or r.status is Status.OK)]
        assert len(won) == 1, (round_, replies)
        assert all(r is None or r.status is Status.BUSY for r in replies if r is not won[0]), replies
        winner = won[0]
        assert winner.lease == 1  # the user's first lease: the losers moved no counter
        record = store.execute(LoadUser(uid))
        events = [e.type for e in store.execute(ListAudit(uid))]
        if isinstance(winner, OtpRemoval):
            assert len(record.otp) == 1 and record.totp and record.backup_codes == 2, record
            assert events == ["otp.disabled"]
            assert store.execute(RestoreOtp(uid, winner.gone, winner.lease)).status is Status.OK
        else:
            assert (record.totp, record.otp, record.backup_codes) == ((), (), 0)
            assert events == ["two_factor.disabled"]
            assert store.execute(RestoreSecondFactor(uid, winner)) is Status.OK
        record = store.execute(LoadUser(uid))
        assert (len(record.totp), len(record.otp), record.backup_codes) == (1, 2, 2)


def test_one_totp_step_is_accepted_for_exactly_one_of_20_callers(store: RecordStore, concurrency: str) -> None:
    uid = new_id()
    _enrol(store, uid)
    replies = race(store, concurrency, [AcceptTotpStep(uid, "totp", "ct", STEP + 1) for _ in range(CALLERS)])
    assert Counter(replies) == {Status.ACCEPTED: 1, Status.REPLAYED: CALLERS - 1}


def test_racing_steps_leave_the_guard_at_the_newest(store: RecordStore, concurrency: str) -> None:
    uid = new_id()
    _enrol(store, uid)
    steps = [STEP + i for i in range(CALLERS, 0, -1)]
    replies = race(store, concurrency, [AcceptTotpStep(uid, "totp", "ct", s) for s in steps])
    assert replies[0] is Status.ACCEPTED  # the newest step always wins its update
    assert store.execute(LoadUser(uid)).totp[0].last_step == STEP + CALLERS


def test_an_added_app_is_confirmed_once_under_20_callers(store: RecordStore, concurrency: str) -> None:
    """One app's first code, sent 20 times at once (each with its own step): one confirmation wins
    and holds the factor-change lease, every other one meets it (BUSY, nothing written); once the
    winner released it, a late one finds the app confirmed already (CHANGED)."""
    uid = new_id()
    _enrol(store, uid)
    assert store.execute(AddAuthenticator(uid, "tab", "ct-tab", "k1", T, "Tablet", 10, 0)) is Status.CREATED
    replies = race(store, concurrency, [ConfirmAuthenticator(uid, "tab", "ct-tab", STEP + i, T,
                                                             audit=[AuditEntry("two_factor.authenticator_added", T)])
                                        for i in range(CALLERS)])
    assert Counter(r.status for r in replies) == {Status.ACCEPTED: 1, Status.BUSY: CALLERS - 1}
    winner = next(i for i, r in enumerate(replies) if r.status is Status.ACCEPTED)
    assert {f.id: f.last_step for f in store.execute(LoadUser(uid)).totp} == {"totp": STEP, "tab": STEP + winner}
    assert len(store.execute(ListAudit(uid))) == 1
    assert store.execute(EndRemoval(uid, replies[winner].lease)) is Status.OK
    assert store.execute(ConfirmAuthenticator(uid, "tab", "ct-tab", STEP, T)).status is Status.CHANGED


def test_one_enrolment_of_20_racing_ones_is_written_whole(store: RecordStore, concurrency: str) -> None:
    uid = new_id()
    replies = race(store, concurrency, [EnableTotp(uid, "totp", f"ct-{i}", "k1", T, STEP, [f"h{i}", f"g{i}"], "c1",
                                                   audit=[AuditEntry("two_factor.enabled", T)])
                                        for i in range(CALLERS)])
    assert Counter(replies) == {Status.CREATED: 1, Status.TAKEN: CALLERS - 1}
    record = store.execute(LoadUser(uid))
    winner = record.totp[0].secret.removeprefix("ct-")
    assert len(record.totp) == 1 and record.backup_codes == 2  # the winner's codes, none of a loser's
    assert store.execute(ConsumeBackupCode(uid, [f"h{winner}"])).status is Status.CONSUMED
    assert len(store.execute(ListAudit(uid))) == 1


def test_the_sign_count_stays_monotonic_under_racing_assertions(store: RecordStore, concurrency: str) -> None:
    uid, cred = new_id(), new_id("cred")
    store.execute(AddPasskey(Passkey(cred, uid, "cose", 0, (), "single_device", False, "", "", T)))
    counts = list(range(CALLERS, 0, -1))
    replies = race(store, concurrency, [AdvanceSignCount(uid, cred, n, T) for n in counts])
    assert replies[0] is Status.ACCEPTED and set(replies) <= {Status.ACCEPTED, Status.REGRESSED}
    passkey = store.execute(GetPasskey(cred))
    assert passkey is not None and passkey.sign_count == CALLERS
    # The same counter value presented by many (a replayed or cloned assertion): one wins.
    replies = race(store, concurrency, [AdvanceSignCount(uid, cred, CALLERS + 1, T) for _ in range(CALLERS)])
    assert Counter(replies) == {Status.ACCEPTED: 1, Status.REGRESSED: CALLERS - 1}


def test_one_sign_up_per_email_under_20_callers(store: RecordStore, concurrency: str) -> None:
    email = f"{new_id('e')}@example.com"
    replies = race(store, concurrency, [CreateAccount(Account(new_id(), email, "h", "", T)) for _ in range(CALLERS)])
    assert Counter(replies) == {Status.CREATED: 1, Status.TAKEN: CALLERS - 1}


def test_concurrent_failures_are_all_counted_and_lock_once(store: RecordStore, concurrency: str) -> None:
    uid = new_id()
    lock_event = [AuditEntry("user.locked", T)]
    replies = race(store, concurrency, [RecordFailure(uid, CALLERS // 2, T, audit_on_lock=lock_event)
                                        for _ in range(CALLERS)])
    assert sorted(r.streak for r in replies) == list(range(1, CALLERS + 1))
    assert store.execute(LoadUser(uid)).failure_streak == CALLERS
    assert [e.type for e in store.execute(ListAudit(uid))] == ["user.locked"]


class _LockTwoRows(RecordOp[int]):
    """Bumps two users' generations in the given order, meeting the other op in between, so two of
    these in opposite orders deadlock on a server; counts how often it was (re)started."""

    def __init__(self, first: str, second: str, meet: threading.Barrier) -> None:
        self.first, self.second, self.meet, self.runs = first, second, meet, 0

    def run(self, schema: Any) -> Any:
        from sqlalchemy import update

        self.runs += 1
        t = schema.user_state
        yield update(t).where(t.c.user_id == self.first).values(generation=t.c.generation + 1)
        if self.runs == 1:
            self.meet.wait(timeout=10)  # both now hold one row and ask for the other's
        yield update(t).where(t.c.user_id == self.second).values(generation=t.c.generation + 1)
        return self.runs


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_a_deadlock_victim_is_run_again_not_refused(store: RecordStore) -> None:
    """SQLite cannot deadlock (a writer takes the lock up front); the servers pick a victim and roll
    it back, and the store runs that operation again instead of answering 503."""
    a, b = new_id(), new_id()
    for uid in (a, b):
        store.execute(RevokeSessions(uid, T))
    meet = threading.Barrier(2)
    ops = [_LockTwoRows(a, b, meet), _LockTwoRows(b, a, meet)]
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(store.execute, ops))
    assert sorted(runs) == [1, 2]  # one ran straight through, the victim ran twice
    assert store.execute(LoadUser(a)).generation == store.execute(LoadUser(b)).generation == 3


def test_an_app_confirmation_racing_removals_and_registrations_one_holds_the_lease(
        store: RecordStore, concurrency: str) -> None:
    """R9-1, R9-2: an added app's confirmation and a passkey's registration take the user's
    factor-change lease like the removals: 20 of them at once (the app's confirmation, the old
    app's removal, a disable, passkey registrations) leave exactly one holding it, every other one
    BUSY with nothing written, whatever the order, but the registrations that came after a removal
    of everything (2FA off: they take no lease, R10-3)."""
    from banata_middleware.stores.records import (
        AuthenticatorRemoval,
        DisabledSecondFactor,
        DisableSecondFactor,
        LeasedChange,
        ListPasskeys,
        RegisterPasskey,
        RemoveAuthenticator,
    )

    for round_ in range(3):
        uid = new_id()
        store.execute(EnableTotp(uid, "totp", "ct", "k1", T, STEP, ["h1", "h2"], "c1"))
        assert store.execute(AddAuthenticator(uid, "tab", "ct-tab", "k1", T, "Tablet", 10, 0)) is Status.CREATED
        ops: list[RecordOp[Any]] = []
        for i in range(CALLERS):
            kind = (i + round_) % 4
            if kind == 0:
                ops.append(ConfirmAuthenticator(uid, "tab", "ct-tab", STEP, T))
            elif kind == 1:
                ops.append(RemoveAuthenticator(uid, "totp", T))
            elif kind == 2:
                ops.append(DisableSecondFactor(uid, T))
            else:
                ops.append(RegisterPasskey(Passkey(new_id("cred"), uid, "cose", 0, (), "single_device", False, "",
                                                   "", T), T))
        replies = race(store, concurrency, ops)
        # A registration after a removal of everything (2FA off) takes no lease (R10-3): lease 0.
        free = [r for r in replies if isinstance(r, LeasedChange) and r.status is Status.CREATED and not r.lease]
        won = [r for r in replies if r not in free and (isinstance(r, DisabledSecondFactor) or (
            isinstance(r, LeasedChange | AuthenticatorRemoval) and r.status in (Status.ACCEPTED, Status.CREATED,
                                                                                 Status.OK)))]
        assert len(won) == 1, (round_, replies)
        assert all(r is None or r.status is Status.BUSY for r in replies if r is not won[0] and r not in free), replies
        winner = won[0]
        record = store.execute(LoadUser(uid))
        apps = {f.id: f.confirmed_at for f in record.totp}
        passkeys = store.execute(ListPasskeys(uid))
        if isinstance(winner, DisabledSecondFactor | AuthenticatorRemoval):  # the last app: 2FA off, held
            assert isinstance(winner, DisabledSecondFactor) or winner.two_factor_off
            assert (apps, record.backup_codes, len(passkeys)) == ({}, 0, len(free))
        elif winner.status is Status.ACCEPTED:
            assert (apps, len(passkeys)) == ({"totp": T, "tab": T}, 0)
        else:
            assert (apps, len(passkeys)) == ({"totp": T, "tab": None}, 1)

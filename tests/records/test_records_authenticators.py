"""Several authenticator apps per user in the record store (issue 15 §2), on SQLite, PostgreSQL and
MariaDB with both engines: adding one under the per-user cap, a code accepted for whichever app it
matched with a replay guard per app, renaming, and removing one (the last turns two-factor off).
The races use real concurrency (20 threads, or 20 coroutines on the async engine): of racing adds
exactly as many as the cap allows win, and of racing removals exactly one removes the last app."""

from __future__ import annotations

from collections import Counter
from functools import partial

from records_support import Sequence, new_id, run_sequence
from test_records_races import CALLERS, concurrency, race  # noqa: F401  (a fixture)

from banata_middleware.stores.records import (
    AcceptAnyTotpStep,
    AcceptTotpStep,
    AddAuthenticator,
    AuditEntry,
    AuthenticatorRemoval,
    ConfirmAuthenticator,
    DisableOtp,
    EnableOtp,
    EnableTotp,
    EndRemoval,
    ListAudit,
    LoadUser,
    OtpRemoval,
    RecordStore,
    RemoveAuthenticator,
    RenameTotpFactor,
    Status,
    TotpCandidate,
)

T = 1_800_000_000_000
STEP = 60_000_000
LIMIT = 10
NEVER_STALE = 0


def _on(uid: str) -> Sequence:
    """Two-factor on: the first app ("totp", "Authenticator"), confirmed, with two backup codes."""
    assert (yield EnableTotp(uid, "totp", "ct-0", "k1", T, STEP, ["h1", "h2"], "c1")) is Status.CREATED


def _add(uid: str, fid: str, name: str, *, at: int = T, stale_before: int = NEVER_STALE,
         limit: int = LIMIT) -> AddAuthenticator:
    return AddAuthenticator(uid, fid, f"ct-{fid}", "k1", at, name, limit, stale_before)


def _confirmed(uid: str, fid: str, step: int) -> Sequence:
    """An added app confirmed by its first code, as the flow confirms it: the confirmation takes the
    factor-change lease, and ends it once its re-check passed (``EndRemoval``), so that the
    user's next change is not BUSY."""
    confirmed = yield ConfirmAuthenticator(uid, fid, f"ct-{fid}", step, T)
    assert confirmed.status is Status.ACCEPTED
    assert (yield EndRemoval(uid, confirmed.lease)) is Status.OK


def test_an_app_is_added_only_while_two_factor_is_on_and_under_the_cap(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        assert (yield _add(uid, "a1", "Tablet")) is Status.CHANGED  # 2FA off: a first setup has backup codes
        yield from _on(uid)
        assert (yield LoadUser(uid)).totp[0].name == "Authenticator"
        assert (yield _add(uid, "a1", "authenticator")) is Status.TAKEN  # names compare without case
        assert (yield _add(uid, "a1", "Tablet")) is Status.CREATED
        assert (yield _add(uid, "a2", "TABLET")) is Status.CREATED  # a new QR code: replaces the unfinished a1
        assert {f.id for f in (yield LoadUser(uid)).totp} == {"totp", "a2"}
        assert (yield ConfirmAuthenticator(uid, "a1", "ct-a1", STEP, T)).status is Status.NOT_FOUND
        for i in range(3, LIMIT + 1):
            assert (yield _add(uid, f"a{i}", f"App {i}")) is Status.CREATED
        assert (yield _add(uid, "a99", "One too many")) is Status.FULL
        # an unfinished one past its time makes room (and goes)
        assert (yield _add(uid, "a99", "One too many", at=T + 10, stale_before=T + 1)) is Status.CREATED
        assert {f.id for f in (yield LoadUser(uid)).totp} == {"totp", "a99"}

    run_sequence(store, mode, sequence)


def test_a_user_with_codes_by_message_only_adds_a_first_app(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        assert (yield EnableOtp(uid, "email", "ann@example.com", T)) is Status.CREATED
        assert (yield _add(uid, "a1", "Authenticator")) is Status.CREATED
        assert (yield ConfirmAuthenticator(uid, "a1", "ct-a1", STEP, T + 1)).status is Status.ACCEPTED
        record = yield LoadUser(uid)
        assert [(f.id, f.name, f.confirmed_at) for f in record.totp] == [("a1", "Authenticator", T + 1)]
        assert record.two_factor_enabled and [o.channel for o in record.otp] == ["email"]

    run_sequence(store, mode, sequence)


def test_a_code_is_accepted_for_the_app_it_matched_each_with_its_own_guard(store: RecordStore, mode: str) -> None:
    uid = new_id()

    def sequence() -> Sequence:
        yield from _on(uid)
        assert (yield _add(uid, "a1", "Tablet")) is Status.CREATED
        assert (yield AcceptTotpStep(uid, "a1", "ct-a1", STEP + 1)) is Status.CHANGED  # not confirmed yet
        assert (yield ConfirmAuthenticator(uid, "a1", "ct-a1", STEP + 1, T + 1)).status is Status.ACCEPTED
        step = STEP + 2
        phone, tablet = TotpCandidate("totp", "ct-0", step), TotpCandidate("a1", "ct-a1", step)
        assert (yield AcceptAnyTotpStep(uid, [phone], T + 2)) is Status.ACCEPTED
        assert (yield AcceptAnyTotpStep(uid, [phone], T + 3)) is Status.REPLAYED  # once per app
        # the same step of the other app is its own first use; a replayed candidate before it is skipped
        assert (yield AcceptAnyTotpStep(uid, [phone, tablet], T + 4)) is Status.ACCEPTED
        assert (yield AcceptAnyTotpStep(uid, [tablet, phone], T + 5)) is Status.REPLAYED
        assert (yield AcceptAnyTotpStep(uid, [TotpCandidate("gone", "ct-x", step + 1)], T)) is Status.NOT_FOUND
        assert (yield AcceptAnyTotpStep(uid, [TotpCandidate("a1", "ct-old", step + 1)], T)) is Status.CHANGED
        used = {f.id: (f.last_step, f.last_used_at) for f in (yield LoadUser(uid)).totp}
        assert used == {"totp": (step, T + 2), "a1": (step, T + 4)}

    run_sequence(store, mode, sequence)


def test_rename(store: RecordStore, mode: str) -> None:
    uid, other = new_id(), new_id()

    def sequence() -> Sequence:
        yield from _on(uid)
        assert (yield _add(uid, "a1", "Tablet")) is Status.CREATED
        assert (yield RenameTotpFactor(uid, "totp", "Phone")) is Status.OK
        assert (yield RenameTotpFactor(uid, "a1", "Phone")) is Status.TAKEN  # the unique index
        assert (yield RenameTotpFactor(other, "totp", "Mine")) is Status.NOT_FOUND
        assert {f.name for f in (yield LoadUser(uid)).totp} == {"Phone", "Tablet"}

    run_sequence(store, mode, sequence)


def test_removing_the_last_app_turns_two_factor_off_whole(store: RecordStore, mode: str) -> None:
    uid = new_id()
    removed = [AuditEntry("two_factor.authenticator_removed", T)]
    off = [AuditEntry("two_factor.disabled", T, detail={"detail": "last_authenticator"})]

    def sequence() -> Sequence:
        yield from _on(uid)
        assert (yield _add(uid, "a1", "Tablet")) is Status.CREATED
        yield from _confirmed(uid, "a1", STEP + 1)
        assert (yield _add(uid, "a2", "Laptop")) is Status.CREATED
        assert (yield RemoveAuthenticator(uid, "nope", T, removed, off)) == AuthenticatorRemoval(
            Status.NOT_FOUND, False)
        assert (yield RemoveAuthenticator(uid, "a2", T, removed, off)) == AuthenticatorRemoval(Status.OK, False)
        assert (yield RemoveAuthenticator(uid, "totp", T, removed, off)) == AuthenticatorRemoval(Status.OK, False)
        assert (yield _add(uid, "a3", "Watch")) is Status.CREATED
        record = yield LoadUser(uid)
        assert record.two_factor_enabled and record.backup_codes == 2
        # without the password the last factor stays, and nothing is removed (R6-4)
        assert (yield RemoveAuthenticator(uid, "a1", T, removed, off, may_turn_off=False)) == AuthenticatorRemoval(
            Status.CHANGED, False)
        assert [f.id for f in (yield LoadUser(uid)).totp] == ["a1", "a3"]
        last = yield RemoveAuthenticator(uid, "a1", T, removed, off)
        assert (last.status, last.two_factor_off) == (Status.OK, True)
        assert last.removed is not None and [f.id for f in last.removed.totp] == ["a1", "a3"]  # for an undo
        assert len(last.removed.codes) == 2
        record = yield LoadUser(uid)
        assert (record.totp, record.backup_codes, record.two_factor_enabled) == ((), 0, False)
        assert [(e.type, e.detail) for e in (yield ListAudit(uid))] == [
            ("two_factor.authenticator_removed", {}), ("two_factor.authenticator_removed", {}),
            ("two_factor.authenticator_removed", {}), ("two_factor.disabled", {"detail": "last_authenticator"})]

    run_sequence(store, mode, sequence)


# -- races ---------------------------------------------------------------------------------------

def test_racing_adds_never_pass_the_cap(store: RecordStore, concurrency: str) -> None:  # noqa: F811
    uid = new_id()
    store.execute(EnableTotp(uid, "totp", "ct-0", "k1", T, STEP, [], ""))
    store.execute(_add(uid, "a0", "Already there"))
    replies = race(store, concurrency, [_add(uid, f"a{i}", f"App {i}") for i in range(1, CALLERS + 1)])
    assert Counter(replies) == {Status.CREATED: LIMIT - 2, Status.FULL: CALLERS - (LIMIT - 2)}
    record = store.execute(LoadUser(uid))
    assert len(record.totp) == LIMIT and len({f.secret for f in record.totp}) == LIMIT


def test_racing_adds_of_one_name_leave_one_app(store: RecordStore, concurrency: str) -> None:  # noqa: F811
    uid = new_id()
    store.execute(EnableTotp(uid, "totp", "ct-0", "k1", T, STEP, [], ""))
    replies = race(store, concurrency, [_add(uid, f"a{i}", "Tablet") for i in range(CALLERS)])
    # each one replaces the unfinished one before it (a new QR code), or meets it in the unique index
    assert set(replies) <= {Status.CREATED, Status.TAKEN} and Status.CREATED in replies
    assert sorted(f.name for f in store.execute(LoadUser(uid)).totp) == ["Authenticator", "Tablet"]


def test_of_racing_removals_exactly_one_removes_the_last_app(store: RecordStore, concurrency: str) -> None:  # noqa: F811
    uid = new_id()
    store.execute(EnableTotp(uid, "totp-0", "ct-0", "k1", T, STEP, ["h1"], "c1"))
    for i in range(1, LIMIT):
        assert store.execute(_add(uid, f"totp-{i}", f"App {i}")) is Status.CREATED
        run_sequence(store, "sync", partial(_confirmed, uid, f"totp-{i}", STEP))
    off = [AuditEntry("two_factor.disabled", T, detail={"detail": "last_authenticator"})]
    ops = [RemoveAuthenticator(uid, f"totp-{i}", T, [AuditEntry("two_factor.authenticator_removed", T)], off)
           for i in range(LIMIT)]
    replies = race(store, concurrency, ops)
    assert Counter((r.status, r.two_factor_off) for r in replies) == {(Status.OK, False): LIMIT - 1,
                                                                      (Status.OK, True): 1}
    record = store.execute(LoadUser(uid))
    assert (record.totp, record.backup_codes) == ((), 0)
    assert [e.type for e in store.execute(ListAudit(uid))].count("two_factor.disabled") == 1


def test_a_removal_racing_verifications_of_its_app(store: RecordStore, concurrency: str) -> None:  # noqa: F811
    """Whatever the order, a step is accepted only while its app exists: the accepted ones come
    before the removal, and none after it (each is one conditional statement on the app's row)."""
    uid = new_id()
    store.execute(EnableTotp(uid, "totp", "ct-0", "k1", T, STEP, [], ""))
    store.execute(_add(uid, "a1", "Tablet"))
    run_sequence(store, "sync", partial(_confirmed, uid, "a1", STEP))
    accepted = [AuditEntry("two_factor.verified", T)]
    ops: list[object] = [AcceptAnyTotpStep(uid, [TotpCandidate("a1", "ct-a1", STEP + i)], T, accepted)
                         for i in range(1, CALLERS)]
    ops.insert(CALLERS // 2, RemoveAuthenticator(uid, "a1", T, [AuditEntry("two_factor.authenticator_removed", T)]))
    replies = race(store, concurrency, ops)  # type: ignore[arg-type]
    assert AuthenticatorRemoval(Status.OK, False) in replies
    assert {r for r in replies if isinstance(r, Status)} <= {Status.ACCEPTED, Status.REPLAYED, Status.NOT_FOUND}
    events = [e.type for e in store.execute(ListAudit(uid))]
    assert "two_factor.verified" not in events[events.index("two_factor.authenticator_removed"):]
    assert [f.id for f in store.execute(LoadUser(uid)).totp] == ["totp"]


def test_adds_racing_the_removal_of_the_last_app_leave_nothing_behind(
        store: RecordStore, concurrency: str) -> None:  # noqa: F811
    """An app added while the last one is removed is refused (two-factor is off by then), or was
    added first and goes with the rest: never an unfinished app left behind for a user without 2FA."""
    for round_ in range(5):
        uid = new_id()
        store.execute(EnableTotp(uid, "totp", "ct-0", "k1", T, STEP, ["h1"], "c1"))
        ops: list[object] = [_add(uid, f"a{i}", f"App {i}") for i in range(5)]
        ops.insert(round_, RemoveAuthenticator(uid, "totp", T))
        replies = race(store, concurrency, ops)  # type: ignore[arg-type]
        assert any(isinstance(r, AuthenticatorRemoval) and r.two_factor_off for r in replies), replies
        assert {r for r in replies if isinstance(r, Status)} <= {Status.CREATED, Status.CHANGED}, replies
        record = store.execute(LoadUser(uid))
        assert (record.totp, record.backup_codes) == ((), 0), (round_, replies)


def test_codes_by_message_stopped_while_the_last_app_goes_leave_no_factor_on(
        store: RecordStore, concurrency: str) -> None:  # noqa: F811
    """``DisableOtp`` and ``RemoveAuthenticator`` of the last app at once, on every backend and
    engine: each decides under the locks every factor removal takes, and takes the removal lease
    there. The app removed first (not the last factor: it keeps no lease), then stopping codes
    removes the last factor and turns two-factor off (its audit says so). Codes stopped first
    (another factor remains: its flow may still put them back, so it keeps the lease), then the
    removal of the app is BUSY and removes nothing: two-factor stays on with the app. Never on with
    nothing left, never both "off", never both BUSY."""
    seen: Counter[str] = Counter()
    for round_ in range(10):
        uid = new_id()
        store.execute(EnableTotp(uid, "totp", "ct-0", "k1", T, STEP, ["h1", "h2"], "c1"))
        store.execute(EnableOtp(uid, "email", "ann@example.com", T))
        off_otp = [AuditEntry("two_factor.disabled", T, detail={"detail": "otp"})]
        off_app = [AuditEntry("two_factor.disabled", T, detail={"detail": "last_authenticator"})]
        ops: list[object] = [DisableOtp(uid, None, T, [AuditEntry("otp.disabled", T)], off_otp),
                             RemoveAuthenticator(uid, "totp", T, [AuditEntry("two_factor.authenticator_removed", T)],
                                                 off_app)]
        if round_ % 2:
            ops.reverse()
        replies = race(store, concurrency, ops)  # type: ignore[arg-type]
        codes = next(r for r in replies if isinstance(r, OtpRemoval))
        app = next(r for r in replies if isinstance(r, AuthenticatorRemoval))
        record = store.execute(LoadUser(uid))
        audit = [(e.type, e.detail.get("detail", "")) for e in store.execute(ListAudit(uid))]
        if app.status is Status.BUSY:
            seen["codes stopped first, the app's removal BUSY"] += 1
            assert (codes.status, codes.two_factor_off, codes.lease) == (Status.OK, False, 1)  # 1st lease
            assert ([f.id for f in record.totp], record.otp, record.backup_codes) == (["totp"], (), 2)
            assert record.two_factor_enabled
            assert audit == [("otp.disabled", "")], audit
        else:
            seen["app removed first, codes stopped last"] += 1
            assert (app.status, app.two_factor_off) == (Status.OK, False), replies
            assert (codes.status, codes.two_factor_off) == (Status.OK, True), replies
            assert codes.removed is not None and codes.removed.codes  # what went with it, for an undo
            assert (record.totp, record.otp, record.backup_codes, record.two_factor_enabled) == ((), (), 0, False)
            assert audit == [("two_factor.authenticator_removed", ""), ("two_factor.disabled", "otp")], audit
    print(f"\n{concurrency}: {dict(seen)}")

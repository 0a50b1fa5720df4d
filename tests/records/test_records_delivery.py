"""The delivery cursor operations on SQLite, PostgreSQL and MariaDB, sync and async: one lease
holder at a time, cursor moves only by the holder from where it saw the cursor, dead letters and
replays."""

from __future__ import annotations

from records_support import Sequence, new_id, run_sequence

from banata_middleware.stores.records import AppendAudit, AuditEntry, ListAudit, RecordStore
from banata_middleware.stores.records.delivery import (
    AdvanceCursor,
    ClaimBatch,
    DeadLetter,
    FinishReplay,
    ListConsumers,
    ListDeadLetters,
    PostponeHead,
    RegisterConsumer,
    RequestReplay,
)

NOW = 1_800_000_000_000
LEASE = 60_000


def test_a_new_consumer_starts_after_the_newest_event_and_sees_what_comes_next(store: RecordStore, mode: str) -> None:
    consumer, user = new_id("c"), new_id()

    def sequence() -> Sequence:
        assert (yield AppendAudit(user, [AuditEntry("before", NOW)])) == 1
        newest = (yield ListAudit(user))[-1].id
        assert (yield RegisterConsumer(consumer)) == newest
        assert (yield RegisterConsumer(consumer)) == newest  # a restart keeps its place
        yield AppendAudit(user, [AuditEntry("two_factor.enabled", NOW, "10.0.0.1", "UA", detail={"k": "v"}),
                                 AuditEntry("passkey.added", NOW)])
        claim = yield ClaimBatch(consumer, "p1", NOW, LEASE)
        assert claim is not None and claim.attempts == 0 and not claim.replays
        mine = [e for e in claim.events if e.user_id == user]
        assert [e.type for e in mine] == ["two_factor.enabled", "passkey.added"]
        assert (mine[0].ip, mine[0].user_agent, mine[0].detail) == ("10.0.0.1", "UA", {"k": "v"})
        assert claim.last_id < mine[0].id < mine[1].id

    run_sequence(store, mode, sequence)


def test_only_one_process_holds_a_consumer_until_its_lease_ends(store: RecordStore, mode: str) -> None:
    consumer = new_id("c")

    def sequence() -> Sequence:
        yield RegisterConsumer(consumer)
        assert (yield ClaimBatch(consumer, "p1", NOW, LEASE)) is not None
        assert (yield ClaimBatch(consumer, "p2", NOW + 1, LEASE)) is None
        assert (yield ClaimBatch(consumer, "p1", NOW + 2, LEASE)) is not None  # renewed by its holder
        assert (yield ClaimBatch(consumer, "p2", NOW + 2 + LEASE, LEASE)) is not None  # expired: taken over
        assert (yield ClaimBatch(consumer, "p1", NOW + 3 + LEASE, LEASE)) is None
        assert (yield ClaimBatch(new_id("unknown"), "p1", NOW, LEASE)) is None

    run_sequence(store, mode, sequence)


def test_the_cursor_moves_only_for_the_holder_from_where_it_saw_it(store: RecordStore, mode: str) -> None:
    consumer, user = new_id("c"), new_id()

    def sequence() -> Sequence:
        yield RegisterConsumer(consumer)
        yield AppendAudit(user, [AuditEntry("a", NOW), AuditEntry("b", NOW)])
        claim = yield ClaimBatch(consumer, "p1", NOW, LEASE)
        first, second = claim.events[-2:]
        base = claim.last_id
        assert not (yield AdvanceCursor(consumer, "p2", base, 0, first.id, NOW + LEASE))  # not the holder
        assert (yield PostponeHead(consumer, "p1", base, 0, NOW + 2000, "HTTP 500"))
        assert not (yield PostponeHead(consumer, "p1", base, 0, NOW + 2000, "HTTP 500"))  # attempts moved
        again = yield ClaimBatch(consumer, "p1", NOW + 1, LEASE)
        assert (again.attempts, again.next_at, again.last_id) == (1, NOW + 2000, base)
        assert (yield AdvanceCursor(consumer, "p1", base, 1, first.id, NOW + LEASE))
        assert not (yield AdvanceCursor(consumer, "p1", base, 1, first.id, NOW + LEASE))  # already moved
        state = next(c for c in (yield ListConsumers()) if c.consumer == consumer)
        assert (state.last_id, state.attempts, state.last_error, state.pending) == (first.id, 0, "", 1)
        assert [e.id for e in (yield ClaimBatch(consumer, "p1", NOW + 2, LEASE)).events] == [second.id]

    run_sequence(store, mode, sequence)


def test_a_dead_letter_moves_the_cursor_and_a_replay_delivers_it_again(store: RecordStore, mode: str) -> None:
    consumer, user = new_id("c"), new_id()

    def sequence() -> Sequence:
        yield RegisterConsumer(consumer)
        yield AppendAudit(user, [AuditEntry("a", NOW), AuditEntry("b", NOW)])
        claim = yield ClaimBatch(consumer, "p1", NOW, LEASE)
        first, second = claim.events[-2:]
        assert (yield DeadLetter(consumer, "p1", claim.last_id, 0, first.id, NOW, "HTTP 500"))
        dead = [d for d in (yield ListDeadLetters(consumer)) if d.event_id == first.id]
        assert [(d.type, d.user_id, d.attempts, d.error, d.replay_at) for d in dead] == [("a", user, 1, "HTTP 500",
                                                                                           None)]
        assert (yield RequestReplay(first.id, NOW + 5, consumer)) == 1
        assert (yield RequestReplay(second.id, NOW + 5, consumer)) == 0  # still ahead: nothing to ask
        claim = yield ClaimBatch(consumer, "p1", NOW + 5, LEASE)
        assert [r.event.id for r in claim.replays] == [first.id] and claim.events[0].id == second.id
        assert not (yield FinishReplay(consumer, "p2", first.id, NOW + 5, True, NOW + 6, NOW + LEASE))  # not its lease
        assert (yield FinishReplay(consumer, "p1", first.id, NOW + 5, False, NOW + 6, NOW + 6 + LEASE, "HTTP 502"))
        assert (yield ClaimBatch(consumer, "p2", NOW + 5 + LEASE, LEASE)) is None  # the replay renewed the lease
        assert [(d.attempts, d.replay_at) for d in (yield ListDeadLetters(consumer))] == [(2, None)]
        assert (yield AdvanceCursor(consumer, "p1", first.id, 0, second.id, NOW + LEASE))
        # An event already delivered may be replayed too: it gets a row marked due.
        assert (yield RequestReplay(second.id, NOW + 7, consumer)) == 1
        assert (yield RequestReplay(first.id, NOW + 7)) >= 1
        claim = yield ClaimBatch(consumer, "p1", NOW + 7, LEASE)
        assert [r.event.id for r in claim.replays] == [first.id, second.id]
        for replay in claim.replays:
            assert (yield FinishReplay(consumer, "p1", replay.event.id, replay.replay_at, True, NOW + 8, NOW + 8))
        assert (yield ListDeadLetters(consumer)) == ()

    run_sequence(store, mode, sequence)


def test_a_replay_marks_only_consumers_that_take_the_events_type(store: RecordStore, mode: str) -> None:
    """R5-1: a consumer that passed an event over (not its type) is not asked to deliver it again.
    The types are matched exactly ('_' is no wildcard), and a restart with other kinds updates them."""
    wide, narrow, user = new_id("w"), new_id("n"), new_id()

    def sequence() -> Sequence:
        yield RegisterConsumer(wide)
        yield RegisterConsumer(narrow, frozenset({"x_b", "two_factor.enabled"}))
        yield AppendAudit(user, [AuditEntry("xab", NOW), AuditEntry("x_b", NOW)])
        for consumer in (wide, narrow):
            claim = yield ClaimBatch(consumer, "p1", NOW, LEASE)
            assert (yield AdvanceCursor(consumer, "p1", claim.last_id, 0, claim.events[-1].id, NOW + LEASE))
        xab, x_b = claim.events[-2:]
        assert (yield RequestReplay(xab.id, NOW + 1, narrow)) == 0
        assert (yield RequestReplay(x_b.id, NOW + 1, narrow)) == 1
        assert (yield RequestReplay(xab.id, NOW + 2, wide)) == 1
        yield RegisterConsumer(narrow, frozenset({"xab"}))  # restarted with other kinds
        assert (yield RequestReplay(xab.id, NOW + 3, narrow)) == 1

    run_sequence(store, mode, sequence)

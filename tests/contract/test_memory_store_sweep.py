"""The memory store forgets expired records by its clock, even those nobody reads again (issue 12
item 5): a simulated day of churn (abandoned sign-in challenges, failure counters, idle sessions, the
single-use marks of passkey sign-ins) leaves its key count bounded, with bounded work per operation."""

from __future__ import annotations

import secrets
from contextlib import ExitStack

import pytest
from harness import ADAPTERS, T0, make_stack
from test_passkeys import sign_in, user_with_passkey

from banata_middleware.config import Policies
from banata_middleware.simulator.clocks import FrozenClock, OffsetClock
from banata_middleware.stores import MemoryStore
from banata_middleware.stores.hot_ops import Throttle

TICK = 300  # simulated seconds between rounds of churn
DAY = 24 * 3600


@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_a_simulated_day_of_churn_leaves_the_memory_store_bounded(adapter: str) -> None:
    clock = FrozenClock(T0)
    with ExitStack() as exits:
        stack = make_stack(adapter, "memory", clock, None, exits, policies=Policies(session_ttl=3600))
        store = stack.auth.store
        assert isinstance(store, MemoryStore)
        pending = []
        for i in range(3):
            api = stack.client()
            api.sign_up(f"tfa{i}@example.com")
            api.enable_2fa()
            pending.append(f"tfa{i}@example.com")
        stack.client().sign_up("idle@example.com")
        _, key = user_with_passkey(stack, "passkey@example.com")
        permanent = len(store.data)

        sizes, written = [], 0
        for tick in range(DAY // TICK):
            ip = f"10.{tick // 200}.{tick % 200}.1"
            for email in pending:  # password right, second factor never given: challenge abandoned
                assert stack.client(ip=ip).sign_in(email).status_code == 403
            for _ in range(3):  # failure counters: one per email, one for the address
                r = stack.client(ip=ip).sign_in(f"{secrets.token_hex(6)}@example.com", "wrong password")
                assert r.status_code == 401
            assert stack.client(ip=ip).sign_in("idle@example.com").status_code == 200  # never used again
            assert sign_in(stack.client(ip=ip), key).status_code == 200  # a ceremony's mark and a session
            written += 3 + 4 + 1 + 2 + 2  # + the address's password-check and passkey sign-in counters
            clock.advance(TICK)
            sizes.append(len(store.data))

        # Live at any time: challenges of the last 300 s, counters of the last 15 min (6 a round), sessions of
        # the last hour (two a round), marks of the last 360 s (300 s and PasskeyFlows.MARK_MARGIN_MS): a few
        # dozen keys over the permanent ones.
        bound = permanent + 3 * 2 + 6 * (900 // TICK + 1) + 2 * (3600 // TICK + 1) + 2 * 1
        print(f"\n{adapter}: {written} records written over a simulated day; permanent {permanent}, "
              f"peak {max(sizes)}, at the end {sizes[-1]}, bound {bound}")
        assert written > 10 * bound
        assert max(sizes[len(sizes) // 2:]) <= bound
        assert len(store._expiry_heap) <= 2 * bound


def test_each_operation_sweeps_a_bounded_number_of_keys() -> None:
    clock = FrozenClock(T0)
    store = MemoryStore(OffsetClock(clock))
    for i in range(1000):
        store.data[f"k{i}"] = "1"
        store.expire(f"k{i}", 1000)
    store.data["durable"] = "1"
    clock.advance(2)
    # reads, writes nothing
    probe = Throttle(counter_key="nothing", now_ms=int(clock.now() * 1000), mode="peek", window_ms=1000, limit=1)
    store.execute(probe)
    assert len(store.data) == 1001 - MemoryStore.SWEEP_PER_OP
    for _ in range(1000 // MemoryStore.SWEEP_PER_OP):
        store.execute(probe)
    assert store.data == {"durable": "1"} and store._expiry_heap == []


def test_a_key_given_a_later_expiry_survives_its_first_one() -> None:
    clock = FrozenClock(T0)
    store = MemoryStore(clock)
    store.data["counter"] = "1"
    store.expire("counter", 1000)
    for _ in range(100):
        store.expire("counter", 5000)  # as a throttle re-expires its counter on every hit
    assert len(store._expiry_heap) == 1
    probe = Throttle(counter_key="nothing", now_ms=0, mode="peek", window_ms=1000, limit=1)
    clock.advance(2)
    store.execute(probe)
    assert store.data == {"counter": "1"}
    clock.advance(4)
    store.execute(probe)
    assert store.data == {}

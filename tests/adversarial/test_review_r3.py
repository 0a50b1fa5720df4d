"""Round-3 review (r3-review): attacks on the fixes of issue 12 items 4-6 and issue 19 item 1
(ceremony cookie, anonymous growth, sign-up throttle, memory sweep, eviction check). Each test here
reproduces a finding; see the report on branch r3-review."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from harness import ADAPTERS, PASSWORD, T0, make_stack

from banata_middleware.config import Policies
from banata_middleware.stores import MemoryStore


class TickingClock:
    """A clock that moves a little between any two reads, as a real one does (``time.time()`` is
    never read twice at the same instant); ``advance`` jumps, like the FrozenClock."""

    def __init__(self, at: float, tick: float = 0.0001) -> None:
        self.at = at
        self.tick = tick

    def now(self) -> float:
        self.at += self.tick
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


# -- memory store: the expiry heap -------------------------------------------------------------
@pytest.mark.parametrize("adapter", sorted(ADAPTERS))
def test_refused_sign_ups_from_one_address_do_not_grow_the_memory_store_heap(adapter: str) -> None:
    """Every sign-up attempt, refused ones too, hits the address's throttle counter, which re-sets its
    expiry. With a clock that moves between reads, that expiry lands a fraction of a millisecond
    earlier than the last one about one hit in ten, and each such hit pushed another heap entry for
    the same key; the sweep then re-pushed every stale entry at the next window instead of dropping
    it. One anonymous address grew the heap without bound while the store held one key."""
    clock = TickingClock(T0)
    with ExitStack() as exits:
        stack = make_stack(adapter, "memory", clock, None, exits)  # type: ignore[arg-type]
        store = stack.auth.store
        assert isinstance(store, MemoryStore)
        api = stack.client(ip="203.0.113.77")
        heaps = []
        for _window in range(3):
            for _ in range(400):
                r = api.auth("/sign-up/email", {"email": "nope", "password": PASSWORD})
                assert r.status_code in (400, 429)
            heaps.append(len(store._expiry_heap))
            clock.advance(Policies().sign_up_window + 1)
        assert len(store.data) == 1  # the one counter
        print(f"\n{adapter}: heap after each window of 400 refused sign-ups: {heaps}")
        assert max(heaps) <= 4


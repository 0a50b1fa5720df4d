"""``user.createdAt`` is one instant: what sign-up answers is what sign-in and get-session report."""

from __future__ import annotations

import pytest
from harness import T0, Stack

from banata_middleware.simulator.clocks import FrozenClock


class TickingClock(FrozenClock):
    """Moves 1 ms every time it is read, as a real clock does between two reads in one request."""

    def now(self) -> float:
        return self.advance(0.001)


@pytest.fixture
def clock() -> FrozenClock:  # overrides tests/conftest.py's frozen clock for this module's stacks
    return TickingClock(T0)


def test_created_at_from_sign_up_is_the_stored_instant(stack: Stack) -> None:
    api = stack.client()
    signed_up = api.sign_up("tick@example.com").json()["user"]["createdAt"]
    assert api.http.get("/api/auth/get-session").json()["user"]["createdAt"] == signed_up
    assert stack.client().sign_in("tick@example.com").json()["user"]["createdAt"] == signed_up

"""freeze(): code reading time.time() or datetime.now() follows a FrozenClock."""

from __future__ import annotations

import datetime
import time

import pytest

from banata_middleware.simulator.clocks import FrozenClock, freeze, skew


def test_time_time_follows_the_clock_as_it_moves() -> None:
    clock = FrozenClock(1_700_000_000)
    with freeze(clock):
        assert time.time() == 1_700_000_000
        clock.advance(90)
        assert time.time() == 1_700_000_090
        clock.set(1_111_111_109)
        assert time.time() == 1_111_111_109
        clock.advance(-9)
        assert time.time() == 1_111_111_100


def test_datetime_now_follows_the_clock() -> None:
    clock = FrozenClock(1_700_000_000)
    with freeze(clock):
        clock.to_next_step(period=3_600)
        assert datetime.datetime.now(datetime.UTC) == datetime.datetime(
            2023, 11, 14, 23, 0, tzinfo=datetime.UTC
        )


def test_fractional_seconds_survive_to_the_microsecond() -> None:
    clock = FrozenClock(1_700_000_000.25)
    with freeze(clock):
        assert time.time() == pytest.approx(1_700_000_000.25, abs=1e-6)
        clock.advance(0.5)
        assert time.time() == pytest.approx(1_700_000_000.75, abs=1e-6)


def test_skewing_a_frozen_clock_moves_time_time_too() -> None:
    clock = FrozenClock(1_000_000)
    with freeze(clock):
        with skew(clock, seconds=-45):
            assert time.time() == 999_955
        assert time.time() == 1_000_000


def test_real_time_returns_after_the_block_and_the_clock_is_released() -> None:
    clock = FrozenClock(1_000_000)
    with freeze(clock):
        pass
    assert abs(time.time() - FrozenClock().now()) < 2
    clock.advance(10)  # no stale listener left to poke a stopped freezegun
    assert clock.now() == 1_000_010
    assert time.time() > 1_600_000_000

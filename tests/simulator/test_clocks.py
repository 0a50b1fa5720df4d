"""Clocks that tests move instead of sleeping: frozen, offset, drifting, skewed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from banata_middleware.clock import SYSTEM_CLOCK, Clock
from banata_middleware.simulator import VirtualAuthenticator, clocks
from banata_middleware.simulator.clocks import (
    ControllableClock,
    DriftingClock,
    FrozenClock,
    OffsetClock,
)

URI = "otpauth://totp/ACME:alice?secret=JBSWY3DPEHPK3PXP&issuer=ACME"
DAY = 86_400


@pytest.fixture(autouse=True)
def fresh_shared_clocks() -> Iterator[None]:
    clocks.reset_shared_clocks(1_700_000_000)
    yield
    clocks.reset_shared_clocks()


def test_all_clocks_satisfy_the_core_clock_protocol() -> None:
    frozen = FrozenClock(0)
    for clock in (frozen, OffsetClock(frozen, 1), DriftingClock(frozen, 50)):
        assert isinstance(clock, Clock)
    assert isinstance(frozen, ControllableClock)
    assert isinstance(clocks.shared_clock(), ControllableClock)
    assert not isinstance(SYSTEM_CLOCK, ControllableClock)


def test_frozen_clock_stands_still_until_moved() -> None:
    clock = FrozenClock(1_000)
    assert clock.now() == clock.now() == 1_000.0
    assert clock.advance(2.5) == 1_002.5
    assert clock.set(500) == 500.0
    assert clock.advance(-100) == clock.now() == 400.0


def test_frozen_clock_without_start_is_now_in_whole_seconds() -> None:
    now = SYSTEM_CLOCK.now()
    clock = FrozenClock()
    assert clock.now() == int(clock.now())
    assert now - 1 <= clock.now() <= now + 1


def test_to_step_boundary_moves_forward_to_the_first_second_of_a_step() -> None:
    clock = FrozenClock(1_700_000_000)  # 20 s into a 30 s step
    assert clock.to_step_boundary() == 1_700_000_010
    assert clock.to_step_boundary() == 1_700_000_010  # already there: stays


def test_to_step_boundary_with_negative_offset_lands_just_before_the_next_step() -> None:
    clock = FrozenClock(1_700_000_000)
    assert clock.to_step_boundary(offset=-1) == 1_700_000_009
    app = VirtualAuthenticator.from_uri(URI, clock=clock)
    last_second = app.code()
    clock.advance(1)
    assert app.code() != last_second
    assert app.code() == app.code(1_700_000_009, steps=1)


def test_to_step_boundary_handles_other_periods_and_offsets() -> None:
    clock = FrozenClock(100)
    assert clock.to_step_boundary(period=60) == 120
    assert clock.to_step_boundary(period=60, offset=30) == 150
    assert clock.to_step_boundary(period=30, offset=29) == 179


def test_to_next_step_always_moves_into_a_fresh_step() -> None:
    clock = FrozenClock(120)
    assert clock.to_next_step() == 150
    assert clock.to_next_step() == 180
    clock.set(181)
    assert clock.to_next_step(offset=5) == 185
    assert clock.to_next_step(offset=5) == 215


def test_to_step_jumps_to_an_absolute_time_step() -> None:
    clock = FrozenClock(0)
    assert clock.to_step(0x23523EC) == 0x23523EC * 30
    assert clock.to_step(10, period=60, offset=59) == 659


def test_offset_clock_follows_its_base_with_a_fixed_skew() -> None:
    base = FrozenClock(1_000)
    behind = OffsetClock(base, -45)
    assert behind.now() == 955
    base.advance(10)
    assert behind.now() == 965
    behind.seconds = 5
    assert behind.now() == 1_015


def test_drifting_clock_gains_50_ppm_as_43_2_seconds_over_ten_days() -> None:
    base = FrozenClock(1_700_000_000)
    crystal = DriftingClock(base, ppm=50)
    assert crystal.now() == 1_700_000_000  # agrees at the start
    base.advance(10 * DAY)
    assert crystal.now() - base.now() == pytest.approx(43.2)


def test_slow_crystal_loses_time_from_an_explicit_start() -> None:
    base = FrozenClock(1_000 + DAY)
    crystal = DriftingClock(base, ppm=-100, start=1_000)
    assert crystal.now() - base.now() == pytest.approx(-8.64)


def test_drifting_phone_leaves_a_one_step_window_after_a_week_or_so() -> None:
    server = FrozenClock(1_700_000_025)  # mid-step
    phone = VirtualAuthenticator.from_uri(URI, clock=DriftingClock(server, ppm=-50))
    assert phone.code() == phone.code(server.now())
    server.advance(7 * DAY)  # 30.24 s slow: a whole step behind, the edge of a +-1 window
    assert phone.code() == phone.code(server.now(), steps=-1)
    server.advance(7 * DAY)  # 60.48 s slow: outside it
    assert phone.code() == phone.code(server.now(), steps=-2)


def test_skew_offsets_an_offset_clock_for_the_block_only() -> None:
    base = FrozenClock(1_000)
    phone = OffsetClock(base, 2)
    with clocks.skew(phone, seconds=-45) as skewed:
        assert skewed is phone
        assert phone.now() == 957
    assert phone.now() == 1_002


def test_skew_on_a_frozen_clock_keeps_moves_made_inside_the_block() -> None:
    phone = FrozenClock(1_000)
    with clocks.skew(phone, seconds=-45):
        assert phone.now() == 955
        phone.advance(30)
    assert phone.now() == 1_030


def test_skew_is_undone_when_the_block_raises() -> None:
    phone = OffsetClock(FrozenClock(1_000), 0)
    with pytest.raises(RuntimeError), clocks.skew(phone, seconds=90):
        raise RuntimeError
    assert phone.now() == 1_000


def test_skews_nest_and_add_up() -> None:
    phone = OffsetClock(FrozenClock(1_000), 0)
    with clocks.skew(phone, seconds=-30), clocks.skew(phone, seconds=-15):
        assert phone.now() == 955
    assert phone.now() == 1_000


def test_skew_refuses_a_clock_it_cannot_move() -> None:
    with pytest.raises(TypeError, match="OffsetClock or FrozenClock"), clocks.skew(
        SYSTEM_CLOCK, seconds=1  # type: ignore[arg-type]
    ):
        pass  # pragma: no cover


def test_default_skew_moves_devices_and_not_the_server() -> None:
    server_clock = clocks.shared_clock()
    phone = VirtualAuthenticator.from_uri(URI, clock=clocks.device_clock())
    assert clocks.device_clock().now() == server_clock.now() == 1_700_000_000
    with clocks.skew(seconds=-45):
        assert server_clock.now() == 1_700_000_000
        assert clocks.device_clock().now() == 1_700_000_000 - 45
        assert phone.code() == phone.code(1_700_000_000 - 45)
    assert clocks.device_clock().now() == 1_700_000_000


def test_device_clock_follows_the_shared_clock() -> None:
    clocks.shared_clock().advance(3_600)
    assert clocks.device_clock().now() == 1_700_003_600


def test_reset_shared_clocks_keeps_the_same_objects_and_clears_skew() -> None:
    shared, device = clocks.shared_clock(), clocks.device_clock()
    device.seconds = 12
    assert clocks.reset_shared_clocks(5_000) is shared
    assert clocks.shared_clock() is shared and clocks.device_clock() is device
    assert device.now() == shared.now() == 5_000

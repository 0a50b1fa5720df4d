"""Clocks for tests and simulations, all satisfying :class:`banata_middleware.clock.Clock`.

The server reads time only through a ``Clock``; so do the virtual devices. Handing both the
same :class:`FrozenClock` makes time a test input: move it and TOTP windows (RFC 6238 section 4),
challenge expiry and lockouts move with it, without sleeping.

Building blocks:

- :class:`FrozenClock` -- time stands still until the test moves it.
- :class:`OffsetClock` -- another clock plus a fixed skew (a phone set 45 s slow).
- :class:`DriftingClock` -- another clock that gains ``ppm`` millionths of every elapsed second
  (a cheap quartz crystal, RFC 6238 section 6 "resynchronization").
- :func:`skew` -- temporarily shift an :class:`OffsetClock` or :class:`FrozenClock`.
- :func:`freeze` -- make ``time.time()`` (via freezegun) follow a :class:`FrozenClock`, for code
  that does not take a ``Clock``.

Process-wide pair, for the pytest plugin: :func:`shared_clock` is the true time the server reads;
:func:`device_clock` is what virtual devices read by default -- the shared clock plus a skew
that ``with skew(seconds=-45):`` changes. Skewing the clock the server reads as well would
move both sides together and test nothing, hence two clocks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from banata_middleware.clock import Clock

__all__ = [
    "ControllableClock",
    "DriftingClock",
    "FrozenClock",
    "OffsetClock",
    "device_clock",
    "freeze",
    "reset_shared_clocks",
    "shared_clock",
    "skew",
]


@runtime_checkable
class ControllableClock(Clock, Protocol):
    """A clock a test can move: the shape the pytest plugin hands to server and devices."""

    def set(self, at: float) -> float: ...

    def advance(self, seconds: float) -> float: ...


Listener = Callable[[float], None]


class FrozenClock:
    """Time that moves only when told to.

    ``at`` is the starting instant in Unix seconds; ``None`` means the real time now, rounded
    down to a whole second so codes and expiries in a test are reproducible within the run.
    Going backwards is allowed: real clocks get stepped back by NTP too.
    """

    def __init__(self, at: float | None = None) -> None:
        self._now = float(math.floor(time.time()) if at is None else at)
        self._listeners: list[Listener] = []

    def __repr__(self) -> str:
        return f"FrozenClock({self._now!r})"

    def now(self) -> float:
        return self._now

    def set(self, at: float) -> float:
        """Jump to ``at`` (Unix seconds); returns the new time."""
        self._now = float(at)
        for listener in list(self._listeners):
            listener(self._now)
        return self._now

    def advance(self, seconds: float) -> float:
        """Move by ``seconds`` (negative moves back); returns the new time."""
        return self.set(self._now + seconds)

    def to_step(self, step: int, period: float = 30, offset: float = 0) -> float:
        """Jump to ``step * period + offset``: ``offset`` seconds into TOTP step ``step``."""
        return self.set(step * period + offset)

    def to_step_boundary(self, period: float = 30, offset: float = 0) -> float:
        """Move forward to the first instant ``k * period + offset`` at or after now.

        Stays put when already there. ``offset=0`` lands on the first second of a step,
        ``offset=-1`` on the last whole second before the next step begins, ``offset=29`` with
        ``period=30`` on the last second of the current step if it is still ahead.
        """
        k = math.ceil((self._now - offset) / period)
        return self.set(k * period + offset)

    def to_next_step(self, period: float = 30, offset: float = 0) -> float:
        """Move forward to the first instant ``k * period + offset`` strictly after now.

        Always moves: after a code was used, this reaches the next code (the replay guard of
        RFC 6238 section 5.2 refuses a second use within one step).
        """
        k = math.floor((self._now - offset) / period) + 1
        return self.set(k * period + offset)

    def _subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(new_time)`` after every move; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)


class OffsetClock:
    """``base`` shifted by ``seconds`` (negative: behind). ``seconds`` may be changed later."""

    def __init__(self, base: Clock, seconds: float = 0) -> None:
        self.base = base
        self.seconds = float(seconds)

    def __repr__(self) -> str:
        return f"OffsetClock({self.base!r}, {self.seconds!r})"

    def now(self) -> float:
        return self.base.now() + self.seconds


class DriftingClock:
    """``base`` gaining ``ppm`` parts per million of the time elapsed since ``start``.

    ``ppm`` may be negative (a slow crystal). ``start`` is the instant of ``base`` at which the
    two agreed; ``None`` means ``base.now()`` at construction. 50 ppm is 4.32 s a day, so a
    device that is never synchronised leaves a +-1-step TOTP window after about a week.
    """

    def __init__(self, base: Clock, ppm: float, start: float | None = None) -> None:
        self.base = base
        self.ppm = float(ppm)
        self.start = base.now() if start is None else float(start)

    def __repr__(self) -> str:
        return f"DriftingClock({self.base!r}, ppm={self.ppm!r}, start={self.start!r})"

    def now(self) -> float:
        t = self.base.now()
        return t + (t - self.start) * self.ppm / 1_000_000


@contextmanager
def skew(clock: OffsetClock | FrozenClock | None = None, *, seconds: float) -> Iterator[Clock]:
    """Shift ``clock`` by ``seconds`` for the ``with`` block, then undo exactly that shift.

    ``clock`` is the device-side clock to skew: an :class:`OffsetClock` gets ``seconds`` added
    to its offset; a :class:`FrozenClock` is moved (only do that to a clock the server does not
    also read). ``None`` means :func:`device_clock`, so ``with skew(seconds=-45):`` puts every
    default virtual device 45 s behind the server. Moves made inside the block survive it: only
    the skew is taken back. Nests.
    """
    target = device_clock() if clock is None else clock
    if isinstance(target, OffsetClock):
        target.seconds += seconds
        try:
            yield target
        finally:
            target.seconds -= seconds
    elif isinstance(target, FrozenClock):
        target.advance(seconds)
        try:
            yield target
        finally:
            target.advance(-seconds)
    else:
        raise TypeError(f"skew() needs an OffsetClock or FrozenClock, not {type(target).__name__}")


def _utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, tz=UTC)


@contextmanager
def freeze(clock: FrozenClock) -> Iterator[FrozenClock]:
    """Make ``time.time()``, ``datetime.now()`` and friends follow ``clock`` inside the block.

    For code that reads the system time directly (a third-party library, a JWT ``iat``) while
    the rest of the test runs on ``clock``. It starts freezegun at ``clock.now()`` and moves
    freezegun every time ``clock`` is set or advanced; nothing is polled, so the two cannot
    diverge. Moving freezegun directly does not move ``clock``: drive time through the clock.
    freezegun keeps microseconds, so sub-microsecond fractions of ``clock.now()`` are lost.
    """
    # Imported here so that freezegun stays a test-time dependency.
    from freezegun import freeze_time
    from freezegun.api import FrozenDateTimeFactory

    with freeze_time(_utc(clock.now())) as frozen:
        assert isinstance(frozen, FrozenDateTimeFactory)  # tick=False gives this factory
        unsubscribe = clock._subscribe(lambda at: frozen.move_to(_utc(at)))
        try:
            yield clock
        finally:
            unsubscribe()


# A whole second, so that tests that print the shared time get stable, readable values.
_SHARED = FrozenClock()
_DEVICE = OffsetClock(_SHARED, 0)


def shared_clock() -> FrozenClock:
    """The process-wide true time: give it to the server under test. Move it to move time."""
    return _SHARED


def device_clock() -> OffsetClock:
    """The process-wide device time: :func:`shared_clock` plus the skew set by :func:`skew`."""
    return _DEVICE


def reset_shared_clocks(at: float | None = None) -> FrozenClock:
    """Put :func:`shared_clock` at ``at`` (``None``: real time now, whole seconds) and the device
    skew back to zero. Keeps the same objects, so servers and devices holding them follow."""
    _SHARED.set(math.floor(time.time()) if at is None else at)
    _DEVICE.seconds = 0.0
    return _SHARED

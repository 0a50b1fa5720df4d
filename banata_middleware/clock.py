"""Where the library reads time. Nothing else in the package calls ``time.time()``.

Tests and the simulator pass their own ``Clock`` (see ``banata_middleware.simulator.clocks``)
so TOTP windows, challenge expiry and lock expiry can be moved without waiting.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """A source of wall-clock time as Unix seconds (float)."""

    def now(self) -> float: ...


class SystemClock:
    """The real clock."""

    # time.time itself, not a method calling it: read two or three times a request, and a Python
    # call costs more than the read.
    now = staticmethod(time.time)


SYSTEM_CLOCK = SystemClock()

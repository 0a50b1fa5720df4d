"""CPU time per request, read from /proc: robust where throughput is not.

On a shared 2-core box the requests/s a phase reaches depend on whatever else runs at that moment;
the CPU time the server spends per request hardly does. The runner samples the CPU time of the
server (with all its worker processes), of Redis and of Locust while a phase runs, and divides the
steady-state part (after ramp-up, from Locust's per-second history) by the requests served then.
"""

from __future__ import annotations

import os
import threading
import time
from bisect import bisect_left
from pathlib import Path

__all__ = ["CpuSampler", "tree_cpu"]

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            found.extend(int(c) for c in text.split())
    except OSError:
        pass
    return found


def _own_cpu(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and all its live descendants."""
    total, stack, seen = 0.0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _own_cpu(p)
        stack.extend(_children(p))
    return total


class CpuSampler:
    """Samples ``tree_cpu`` of named processes every ``interval`` seconds in a background thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.25) -> None:
        self.pids = pids
        self.interval = interval
        self.times: list[float] = []
        self.values: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        self.values.append({name: tree_cpu(pid) for name, pid in self.pids.items()})
        self.times.append(time.time())

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)
        self._sample()

    def at(self, when: float) -> dict[str, float] | None:
        """CPU seconds per process at ``when``, interpolated between samples (None outside them)."""
        times = self.times
        if len(times) < 2 or when < times[0] or when > times[-1]:
            return None
        i = max(1, bisect_left(times, when))
        t0, t1 = times[i - 1], times[i]
        w = 0.0 if t1 == t0 else (when - t0) / (t1 - t0)
        a, b = self.values[i - 1], self.values[i]
        return {name: a[name] + w * (b[name] - a[name]) for name in a}

"""A virtual clock, so a simulated day can run in minutes and every run is reproducible.

The fleet advances the clock in fixed ticks. With ``speed`` set, ``pace()`` sleeps so virtual
time runs ``speed`` times faster than wall time (1.0 = real time, for the demo); without it the
fleet runs as fast as the CPU allows (soak tests, unit tests).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class VirtualClock:
    start: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z: a fixed epoch keeps runs reproducible
    speed: float | None = None  # virtual seconds per wall second; None = as fast as possible
    now: float = field(init=False)
    _wall_origin: float = field(init=False, default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.now = self.start

    def resume_at(self, t: float) -> None:
        """Continue from virtual time ``t`` (a restarted fleet keeps its timeline monotonic)."""
        self.start = self.now = t
        self._wall_origin = time.monotonic()

    @property
    def elapsed(self) -> float:
        return self.now - self.start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def pace(self) -> None:
        """Sleep until wall time catches up with virtual time at the configured speed."""
        if not self.speed:
            return
        due = self._wall_origin + self.elapsed / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)

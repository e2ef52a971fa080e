"""Load generator: Poisson arrivals per tenant under a steady, diurnal or bursty rate profile.

Rates are per device. ``diurnal`` follows a day-long sine (trough at 04:00, peak at 16:00
virtual time), ``burst`` adds a 60 s spike at 3x every 15 minutes; all are seeded, so a run
is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PROFILES = ("steady", "diurnal", "burst")


MAX_RATE = 1e6  # requests per second per device: beyond any device, and Poisson sampling stays exact


@dataclass(frozen=True)
class LoadProfile:
    kind: str = "steady"
    rate_per_device: float = 150.0  # requests per second at the mean
    tenant_weights: tuple[tuple[str, float], ...] = (("team-search", 0.5), ("team-ads", 0.4),
                                                     ("batch-jobs", 0.1))
    noisy_multiplier: float = 6.0  # F7: the noisy tenant's rate, as a multiple of the mean rate

    def __post_init__(self) -> None:
        if self.kind not in PROFILES:
            raise ValueError(f"unknown load profile {self.kind!r}; choose one of: {', '.join(PROFILES)}")
        if not 0 <= self.rate_per_device <= MAX_RATE:  # also refuses NaN and inf
            raise ValueError(f"rate_per_device must be between 0 and {MAX_RATE:g} requests/s, "
                             f"got {self.rate_per_device!r}")
        for tenant, weight in self.tenant_weights:
            if not 0 <= weight <= MAX_RATE:
                raise ValueError(f"tenant weight of {tenant!r} must be a finite number >= 0, got {weight!r}")

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(t for t, _ in self.tenant_weights)

    def rate(self, t: float) -> float:
        """Mean request rate (per device, per second) at virtual unix time ``t``."""
        base = self.rate_per_device
        if self.kind == "diurnal":
            hour = (t % 86400) / 3600
            return base * (1 + 0.6 * math.sin((hour - 10) / 24 * 2 * math.pi))
        if self.kind == "burst" and (t % 900) < 60:
            return base * 3
        return base

    def arrivals(self, rng: np.random.Generator, t0: float, dt: float,
                 noisy_tenant: str | None = None) -> dict[str, np.ndarray]:
        """Sorted arrival times per tenant within [t0, t0 + dt)."""
        rate = self.rate(t0)
        out = {}
        for tenant, weight in self.tenant_weights:
            lam = rate * (self.noisy_multiplier if tenant == noisy_tenant else weight) * dt
            n = int(rng.poisson(lam))
            out[tenant] = np.sort(t0 + rng.random(n) * dt)
        return out

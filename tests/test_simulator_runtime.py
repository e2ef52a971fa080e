"""The runtime's FIFO fast path must serve exactly as its general batching loop does.

The general loop (masks over the whole queue per batch) is what F7's time-slicing needs; a healthy
device takes the fast path (a head index over the sorted queue), which the soak depends on for
speed. A priority tenant that is not one of the runtime's tenants makes the general loop run
without any slicing, so both paths can be driven with the same arrivals and compared.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuobs.simulator.hardware import CATALOGUE
from npuobs.simulator.runtime import ACTIVATION_BYTES_PER_REQUEST, Conditions, InferenceRuntime

TENANTS = ("team-search", "team-ads", "canary")


def _run(priority: str | None, rate: float, cond: dict, ticks: int = 40, dt: float = 1.0) -> tuple:
    runtime = InferenceRuntime(CATALOGUE["RNGD"], "digits-mlp", TENANTS, np.random.default_rng(7), node="n",
                               device="0")
    arrivals_rng = np.random.default_rng(11)
    served = []
    for i in range(ticks):
        t0 = 1000.0 + i * dt
        arrivals = {t: np.sort(t0 + arrivals_rng.random(arrivals_rng.poisson(rate * dt)) * dt) for t in TENANTS[:2]}
        result = runtime.step(t0, dt, arrivals, Conditions(priority_tenant=priority, **cond))
        served.append((result.busy_seconds, result.oom_events, runtime.busy_until, runtime.queue_length))
    return served, runtime.store.runtime_state(), runtime.store.ops_state()


@pytest.mark.parametrize("rate, cond", [
    (150.0, {}),  # healthy: mostly batches of one
    (4000.0, {}),  # overloaded: full batches, a growing queue, overflow rejected
    (900.0, {"clock_factor": 0.3}),  # throttled: batches form while the device is slow
    (150.0, {"memory_free_bytes": 3 * ACTIVATION_BYTES_PER_REQUEST}),  # batches over 3 fail to allocate
], ids=["healthy", "overloaded", "throttled", "memory-short"])
def test_fast_path_serves_like_the_general_loop(rate: float, cond: dict) -> None:
    fast = _run(None, rate, cond)
    general = _run("not-a-tenant", rate, cond)
    assert fast == general
    outcomes = {k for tenant in fast[1].tenants.values() for k in tenant.requests}
    assert "success" in outcomes
    if "memory_free_bytes" in cond:
        assert sum(s[1] for s in fast[0]) > 0, "no batch was large enough to fail its allocation"

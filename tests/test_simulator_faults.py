"""Every failure mode, injected into a simulated fleet, moves the readings it should; clearing recovers.

Readings are taken the way the exporter takes them: through the ``sim`` backend reading the
published state tree, in virtual time (minutes of fleet time in well under a second each).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from npuobs.devices.base import DeviceReading, WorkloadReading
from npuobs.devices.registry import create
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.fleet import Fleet, FleetConfig

NODE = "node-0"


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    f = Fleet(FleetConfig.single_node(2, seed=3, node=NODE), tmp_path, VirtualClock())
    f.run(60)  # warm up: model loaded, temperatures settling
    return f


def read(fleet: Fleet) -> tuple[dict[str, DeviceReading], list[WorkloadReading]]:
    snap = create("sim", state_dir=fleet.state_dir, node=NODE).sample()
    return {d.info.device: d for d in snap.devices}, list(snap.workloads)


def work(fleet: Fleet, device: str, tenant: str | None = None) -> list[WorkloadReading]:
    return [w for w in read(fleet)[1] if w.device == device and (tenant is None or w.tenant == tenant)]


def requests(fleet: Fleet, device: str, outcome: str) -> int:
    return sum(w.requests_total[outcome] for w in work(fleet, device))


def inject(fleet: Fleet, kind: str, device: str = "0", **kw) -> None:
    fleet.faults.inject(kind, node=NODE, device=device, now=fleet.clock.now, **kw)


def p_over(w: list[WorkloadReading], bound: float) -> float:
    """Share of requests slower than ``bound`` seconds (a bucket edge)."""
    total = sum(x.latency.count for x in w)
    under = sum(dict(x.latency.buckets)[bound] for x in w)
    return 1 - under / total


def test_healthy_fleet_reads_plausibly(fleet: Fleet) -> None:
    devices, workloads = read(fleet)
    assert set(devices) == {"0", "1"}
    for d in devices.values():
        assert d.up and d.healthy
        assert 30 < d.temperature_celsius < d.temperature_throttle_threshold_celsius
        assert 0.05 < d.utilization_ratio < 0.95
        assert d.info.driver_version and d.info.firmware_version
        host = sum(s.count for (_, pl), s in d.ops.items() if pl == "host")
        assert host == 0
    assert all(w.requests_total["error"] == 0 for w in workloads)
    canary = [w for w in workloads if w.tenant == "canary"]
    assert canary and all(w.golden_checks_total > 0 and w.golden_mismatches_total == 0 for w in canary)


def test_f1_offline_device_goes_down_and_comes_back(fleet: Fleet) -> None:
    inject(fleet, "F1")
    fleet.run(20)
    devices, _ = read(fleet)
    assert not devices["0"].up and devices["0"].temperature_celsius is None
    assert devices["1"].up  # one bad device never takes the others down
    assert requests(fleet, "0", "error") > 0
    assert devices["0"].errors_total["timeout"] > 0
    fleet.faults.clear(kind="F1")
    errors = requests(fleet, "0", "error")
    fleet.run(20)
    assert read(fleet)[0]["0"].up
    assert requests(fleet, "0", "error") == errors


@pytest.mark.fleet  # 14 virtual minutes of the whole fleet through real kernels: seconds, not a unit test
def test_f2_thermal_throttle_heats_slows_and_recovers(fleet: Fleet) -> None:
    before = p_over(work(fleet, "0"), 0.01)
    inject(fleet, "F2")
    fleet.run(400)
    d = read(fleet)[0]["0"]
    assert d.temperature_celsius >= d.temperature_throttle_threshold_celsius - 5
    assert d.throttled and d.throttle_reasons["thermal"]
    assert d.clock_hertz == d.clock_max_hertz / 2
    fleet.run(60)
    assert p_over(work(fleet, "0"), 0.01) > before  # tail latency grows while throttled
    fleet.faults.clear()
    fleet.run(400)
    d = read(fleet)[0]["0"]
    assert not d.throttled and d.clock_hertz == d.clock_max_hertz
    assert d.temperature_celsius < d.temperature_throttle_threshold_celsius - 5


def test_f3_bad_calibration_raises_accuracy_delta(fleet: Fleet) -> None:
    healthy = work(fleet, "0", "canary")[0].accuracy_delta_ratio
    assert healthy is not None and healthy < 0.02
    inject(fleet, "F3")
    fleet.run(30)
    canary = work(fleet, "0", "canary")[0]
    assert canary.accuracy_delta_ratio > 0.05
    assert canary.golden_mismatches_total > 0
    fleet.faults.clear()
    fleet.run(30)
    assert work(fleet, "0", "canary")[0].accuracy_delta_ratio < 0.02


def test_f4_memory_fills_and_allocations_fail(fleet: Fleet) -> None:
    inject(fleet, "F4")
    fleet.run(10)
    d = read(fleet)[0]["0"]
    assert d.memory_used_bytes > 0.99 * d.memory_total_bytes
    assert d.oom_events_total > 0 and requests(fleet, "0", "oom") > 0
    fleet.faults.clear()
    fleet.run(5)
    oom = read(fleet)[0]["0"].oom_events_total
    fleet.run(10)
    d = read(fleet)[0]["0"]
    assert d.oom_events_total == oom and d.memory_used_bytes < 0.5 * d.memory_total_bytes


def test_f5_unsupported_op_runs_on_host(fleet: Fleet) -> None:
    inject(fleet, "F5")
    fleet.run(30)
    ops = read(fleet)[0]["0"].ops
    host = {op for (op, pl), s in ops.items() if pl == "host" and s.count}
    assert host == {"gelu"}
    total = sum(s.count for s in ops.values())
    fleet.faults.clear()
    fleet.run(30)
    ops2 = read(fleet)[0]["0"].ops
    assert ops2[("gelu", "host")].count == ops[("gelu", "host")].count  # no more fallbacks
    assert sum(s.count for s in ops2.values()) > total


def test_f6_version_mismatch_shows_in_info(fleet: Fleet) -> None:
    before = read(fleet)[0]
    inject(fleet, "F6")
    fleet.run(2)
    after = read(fleet)[0]
    assert after["0"].info.firmware_version != before["0"].info.firmware_version
    assert after["1"].info == before["1"].info
    fleet.faults.clear()
    fleet.run(2)
    assert read(fleet)[0]["0"].info == before["0"].info


@pytest.mark.fleet  # minutes of time-sliced contention through real kernels
def test_f7_noisy_neighbour_spreads_tenant_latency(fleet: Fleet) -> None:
    def slow_share(tenant: str) -> float:
        return p_over(work(fleet, "0", tenant), 0.025)

    inject(fleet, "F7")
    fleet.run(120)
    victim, noisy = slow_share("team-search"), slow_share("batch-jobs")
    assert victim > 0.2 and victim > 3 * noisy


def test_f8_firmware_bug_produces_incorrect_outputs(fleet: Fleet) -> None:
    inject(fleet, "F8")
    fleet.run(45)
    canary = work(fleet, "0", "canary")[0]
    assert canary.golden_mismatches_total > 0
    fleet.faults.clear()
    fleet.run(16)
    mismatches = work(fleet, "0", "canary")[0].golden_mismatches_total
    fleet.run(45)
    assert work(fleet, "0", "canary")[0].golden_mismatches_total == mismatches


def test_reset_is_counted_with_reason_and_cold_starts(fleet: Fleet) -> None:
    cold = sum(w.cold_starts_total for w in work(fleet, "0"))
    inject(fleet, "RESET", reason="firmware", duration=5)
    fleet.run(20)
    d = read(fleet)[0]["0"]
    assert d.resets_total["firmware"] == 1 and sum(d.resets_total.values()) == 1
    assert d.up
    assert sum(w.cold_starts_total for w in work(fleet, "0")) > cold


def test_counters_survive_a_simulator_restart(fleet: Fleet, tmp_path: Path) -> None:
    inject(fleet, "RESET", reason="watchdog", duration=3)
    fleet.run(10)
    before = read(fleet)[0]["0"]
    again = Fleet(FleetConfig.single_node(2, seed=3, node=NODE), tmp_path, VirtualClock(start=fleet.clock.now))
    again.run(5)
    after = read(again)[0]["0"]
    assert after.resets_total == before.resets_total  # the applied reset is not counted twice
    assert after.energy_joules_total > before.energy_joules_total
    assert after.ops[("matmul_int8", "device")].count > before.ops[("matmul_int8", "device")].count


def test_same_seed_same_run(tmp_path: Path) -> None:
    def run(d: Path) -> list:
        f = Fleet(FleetConfig.single_node(2, seed=9, node=NODE), d, VirtualClock())
        f.run(30)
        return [(w.tenant, w.latency, dict(w.requests_total)) for w in read(f)[1]]

    assert run(tmp_path / "a") == run(tmp_path / "b")

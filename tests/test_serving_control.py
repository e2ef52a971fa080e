"""Serving-plane actions on a real simulated fleet: drain, reset, rollout/rollback, CPU path.

The fleet obeys the same ``ServingControl`` the control API serves; readings are taken through the
``sim`` backend (what the exporter reads), in virtual time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from npuobs.devices.registry import create
from npuobs.instrumentation.control import CPU, ControlError, ServingControl
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.fleet import DEFAULT_MODEL, Fleet, FleetConfig

pytestmark = pytest.mark.unit
NODE = "node-0"


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    f = Fleet(FleetConfig.single_node(2, seed=3, node=NODE), tmp_path, VirtualClock())
    f.run(20)
    return f


def workloads(fleet: Fleet, device: str, tenant: str | None = None):
    snap = create("sim", state_dir=fleet.state_dir, node=NODE).sample()
    return [w for w in snap.workloads if w.device == device and (tenant is None or w.tenant == tenant)]


def served(fleet: Fleet, device: str) -> int:
    return sum(sum(w.requests_total.values()) for w in workloads(fleet, device) if w.tenant != "canary")


def device_reading(fleet: Fleet, device: str):
    snap = create("sim", state_dir=fleet.state_dir, node=NODE).sample()
    return {d.info.device: d for d in snap.devices}[device]


def test_drain_stops_new_requests_moves_load_and_undrain_restores(fleet: Fleet) -> None:
    before0, before1 = served(fleet, "0"), served(fleet, "1")
    fleet.run(10)
    healthy_rate1 = (served(fleet, "1") - before1) / 10
    assert served(fleet, "0") > before0
    entry = fleet.control.drain(NODE, "0", by="test")
    assert entry["changed"] and fleet.control.drain(NODE, "0")["changed"] is False  # idempotent
    fleet.run(2)  # the queued (in-flight) requests finish
    state = {d["device"]: d for d in fleet.control.snapshot()["devices"]}
    assert state["0"]["drained"] and state["0"]["in_flight"] == 0 and state["0"]["drain_complete"]
    drained_at, other_at = served(fleet, "0"), served(fleet, "1")
    fleet.run(20)
    assert served(fleet, "0") == drained_at  # nothing new routed to it
    # the load balancer sends the model's whole load to the device still accepting: about twice its share
    assert (served(fleet, "1") - other_at) / 20 > 1.6 * healthy_rate1
    checks = workloads(fleet, "0", "canary")[0].golden_checks_total
    fleet.run(20)
    assert workloads(fleet, "0", "canary")[0].golden_checks_total == checks  # no canary traffic either
    fleet.control.undrain(NODE, "0")
    fleet.run(10)
    assert served(fleet, "0") > drained_at


def test_drained_offline_device_stops_failing_requests(fleet: Fleet) -> None:
    """F1 + drain: the device stays down, but no request is sent to it, so none fails."""
    fleet.faults.inject("F1", node=NODE, device="1", now=fleet.clock.now)
    fleet.run(5)
    errors = sum(w.requests_total["error"] for w in workloads(fleet, "1"))
    assert errors > 0
    fleet.control.drain(NODE, "1")
    fleet.run(10)
    assert sum(w.requests_total["error"] for w in workloads(fleet, "1")) <= errors + 200  # the queue at drain
    settled = sum(w.requests_total["error"] for w in workloads(fleet, "1"))
    fleet.run(20)
    assert sum(w.requests_total["error"] for w in workloads(fleet, "1")) == settled
    assert not device_reading(fleet, "1").up


def test_rollout_of_bad_calibration_regresses_and_rollback_recovers(fleet: Fleet) -> None:
    fleet.run(30)
    assert workloads(fleet, "0", "canary")[0].accuracy_delta_ratio < 0.02
    with pytest.raises(ControlError, match="no previous version"):
        fleet.control.rollback(DEFAULT_MODEL)
    fleet.control.rollout(DEFAULT_MODEL, "v2", {"calibration": "bad"})
    fleet.run(40)
    bad = workloads(fleet, "0", "canary")[0]
    assert bad.accuracy_delta_ratio > 0.05 and bad.golden_mismatches_total > 0
    entry = fleet.control.rollback(DEFAULT_MODEL)
    assert entry["version"] == "v1" and entry["from"] == "v2"
    assert fleet.control.current_version(DEFAULT_MODEL)[0] == "v1"
    fleet.run(40)
    assert workloads(fleet, "0", "canary")[0].accuracy_delta_ratio < 0.02


def test_rollout_rejects_unknown_calibration_and_keeps_serving(fleet: Fleet) -> None:
    with pytest.raises(ValueError, match="unknown calibration"):
        fleet.control.rollout(DEFAULT_MODEL, "v9", {"calibration": "sideways"})
    assert fleet.control.current_version(DEFAULT_MODEL)[0] == "v1"


def test_reset_restarts_driver_and_frees_leaked_memory(fleet: Fleet) -> None:
    fleet.faults.inject("F4", node=NODE, device="0", now=fleet.clock.now)
    fleet.run(5)
    assert device_reading(fleet, "0").oom_events_total > 0
    fleet.control.reset(NODE, "0")
    fleet.run(3)
    assert not device_reading(fleet, "0").up  # down while the driver restarts
    fleet.run(15)
    d = device_reading(fleet, "0")
    assert d.up and d.resets_total["user"] == 1
    oom = d.oom_events_total
    fleet.run(10)
    d = device_reading(fleet, "0")
    assert d.oom_events_total == oom and d.memory_used_bytes < 0.5 * d.memory_total_bytes
    with pytest.raises(ControlError, match="no device '7'"):
        fleet.control.reset(NODE, "7")


def test_cpu_serving_path_runs_every_op_on_the_host_and_back(fleet: Fleet) -> None:
    def host_ops() -> int:
        return sum(s.count for (_, placement), s in device_reading(fleet, "0").ops.items() if placement == "host")

    start = host_ops()
    fleet.run(5)
    assert host_ops() == start  # the healthy graph runs entirely on the device
    fleet.control.set_serving_path(DEFAULT_MODEL, CPU)
    fleet.run(5)
    moved = host_ops()
    assert moved > start
    assert workloads(fleet, "0", "team-search")[0].requests_total["success"] > 0
    fleet.control.set_serving_path(DEFAULT_MODEL, "accelerator")
    fleet.run(5)
    after = host_ops()
    fleet.run(5)
    assert host_ops() == after
    with pytest.raises(ControlError, match="unknown serving path"):
        fleet.control.set_serving_path(DEFAULT_MODEL, "quantum")


def test_embedded_control_counts_in_flight_and_runs_hooks() -> None:
    """What a real inference server embeds: its router reads accepting(), its handler counts in-flight."""
    loaded: list[tuple[str, str]] = []
    control = ServingControl(on_version=lambda m, v, a: loaded.append((m, v)))
    control.add_device("n", "0", model="m")
    control.add_model("m", versions=["a"])
    with control.in_flight("n", "0"):
        control.drain("n", "0")
        assert not control.accepting("n", "0")
        assert control.snapshot()["devices"][0]["drain_complete"] is False
    assert control.snapshot()["devices"][0]["drain_complete"] is True
    with pytest.raises(ControlError) as no_hook:
        control.reset("n", "0")
    assert no_hook.value.status == 501
    control.rollout("m", "b")
    control.rollback("m")
    assert loaded == [("m", "b"), ("m", "a")]
    assert [h["action"] for h in control.snapshot()["history"]] == ["drain", "rollout", "rollback"]

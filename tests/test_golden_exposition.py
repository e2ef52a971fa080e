"""Golden exposition: one fixed snapshot -> the exact ``/metrics`` bytes, committed under tests/golden/.

Like node_exporter's end-to-end output (``collector/fixtures/e2e-output.txt``): any change to a
metric name, label, help text, bucket, exemplar or ordering shows up as a diff of a committed
file that a reviewer reads, not as a surprise on a dashboard. The input is built from plain
values (no clock, no simulator), and runs through the same code the exporter and the
instrumentation library serve from.

After an intended change, regenerate the files and review the diff::

    NPUOBS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_golden_exposition.py
"""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType

import pytest

from npuobs.devices.base import DeviceInfo, DeviceReading, Histogram, OpStats, Snapshot, WorkloadReading
from npuobs.devices.source import SourceStatus
from npuobs.exporter import profiles
from npuobs.exporter.families import Inputs
from npuobs.exporter.families import build as build_families
from npuobs.exporter.podresources.client import Allocation, PodAttribution, PodRef
from npuobs.exporter.render import OPENMETRICS, TEXT, render
from npuobs.instrumentation.sinks import Exemplar, Identity, PrometheusSink
from npuobs.schema import LATENCY_BUCKETS

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("NPUOBS_UPDATE_GOLDEN") == "1"
NODE = "node-a"


def _device(device: str, **fields: object) -> DeviceReading:
    info = DeviceInfo(device=device, vendor="furiosa", model="RNGD", uuid=f"uuid-{device}", driver_version="1.2.3",
                      firmware_version="fw-4", runtime_version="2024.2")
    return DeviceReading(info=info, up=True, **fields)


def snapshot() -> Snapshot:
    """Two devices (one with every reading, one offline with counters only) and two workloads."""
    full = _device(
        "0", healthy=True, temperature_celsius=51.5, temperature_throttle_threshold_celsius=95.0, power_watts=142.25,
        power_limit_watts=180.0, energy_joules_total=123456.5, utilization_ratio=0.75, memory_used_bytes=17179869184,
        memory_total_bytes=51539607552, clock_hertz=1.6e9, clock_max_hertz=2.0e9, throttled=True,
        throttle_reasons=MappingProxyType({"thermal": True, "power": False}),
        ops=MappingProxyType({("matmul", "device"): OpStats(1200, 3.5), ("conv", "device"): OpStats(300, 1.25),
                              ("softmax", "host"): OpStats(40, 0.5)}),
        resets_total=MappingProxyType({"driver": 2}), errors_total=MappingProxyType({"ecc_corrected": 7}),
        oom_events_total=1)
    offline = DeviceReading(info=DeviceInfo(device="1", vendor="furiosa", model="RNGD", uuid="uuid-1"),
                            up=False, resets_total=MappingProxyType({"driver": 0}))
    cumulative, running = [], 0
    for bound, n in zip((*LATENCY_BUCKETS, float("inf")), range(1, len(LATENCY_BUCKETS) + 2), strict=True):
        running += n
        cumulative.append((bound, running))
    latency = Histogram(tuple(cumulative), 42.5)
    workloads = (
        WorkloadReading(device="0", model="resnet50", tenant="canary", latency=latency,
                        requests_total=MappingProxyType({"success": 900, "error": 3}), queue_length=4,
                        model_load_seconds=12.5, cold_starts_total=1, accuracy_delta_ratio=0.002,
                        golden_checks_total=50, golden_mismatches_total=1,
                        latency_exemplar=("0af7651916cd43dd8448eb211c80319c", 0.037)),
        WorkloadReading(device="0", model="resnet50", tenant="batch", latency=latency,
                        requests_total=MappingProxyType({"success": 10}), queue_length=0),
    )
    return Snapshot("furiosa", 1_700_000_000.0, (full, offline), workloads)


STATUSES = {
    "auto": SourceStatus(True, 0.25, 0, 1_700_000_000.0),
    "furiosa": SourceStatus(True, 0.125, 1, 1_700_000_000.0),
    "rebellions": SourceStatus(False, 3.5, 4, None),
    "podresources": SourceStatus(True, 0.0625, 0, 1_700_000_000.0),
}
ATTRIBUTION = PodAttribution((Allocation("furiosa.ai/rngd", "0", PodRef("serving", "resnet-7d9f", "server")),))
RESOURCE_NAMES = {"furiosa": ("furiosa.ai/rngd",)}
VANISHED = {"2": "furiosa"}


def exporter_exposition(profile: str) -> dict[str, bytes]:
    """The exporter's /metrics bodies for the fixed input, as it renders them (both formats)."""
    inputs = Inputs(NODE, snapshot(), STATUSES, "9.9.9", VANISHED, ATTRIBUTION, RESOURCE_NAMES)
    return render(profiles.apply(build_families(inputs), profile)).bodies


def instrumentation_exposition() -> dict[str, bytes]:
    """What an instrumented server's registry serves for the same runtime, through PrometheusSink."""
    sink = PrometheusSink()
    store = sink.series(Identity(NODE, "0", "furiosa", "resnet50"))
    for i, seconds in enumerate((0.004, 0.02, 0.02, 0.3, 1.5, 9.0)):
        exemplar = Exemplar("0af7651916cd43dd8448eb211c80319c", seconds, 1_700_000_000.0) if i == 4 else None
        store.observe("canary", seconds, "success", exemplar, (("matmul", "device", 3, 0.01),), cold_start=i == 0)
    store.observe("batch", 0.05, "error", None, (("softmax", "host", 1, 0.002),), cold_start=False)
    store.set_model_load(12.5)
    store.set_queue_length("canary", 2)
    store.add_canary("canary", 10, 1, 0.002)
    return render(sink.collect()).bodies


CASES = {
    "exporter-standard": lambda: exporter_exposition("standard"),
    "exporter-debug": lambda: exporter_exposition("debug"),
    "instrumentation": instrumentation_exposition,
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(("fmt", "suffix"), [(TEXT, "prom"), (OPENMETRICS, "om.txt")])
def test_exposition_matches_the_golden_file(case: str, fmt: str, suffix: str) -> None:
    body = CASES[case]()[fmt]
    path = GOLDEN / f"{case}.{suffix}"
    if UPDATE:
        path.write_bytes(body)
    assert path.exists(), f"{path} missing; regenerate: NPUOBS_UPDATE_GOLDEN=1 pytest {Path(__file__).name}"
    assert body.decode() == path.read_text(), "exposition changed; if intended, regenerate (see module docstring)"

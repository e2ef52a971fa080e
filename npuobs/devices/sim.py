"""The simulated backend: reads the driver-like state tree one simulated node publishes.

It is the simulator's "SMI tool": a reader that keeps no state of its own, so the counters it
reports (resets, errors, OOMs, energy) are the driver's persisted ones and survive a restart of
the exporter. A device whose file says ``offline`` is reported ``up=False`` with no sensor
values; a device whose file is gone has vanished and is not reported at all; one unreadable file
makes that one device ``up=False`` and is listed in the snapshot's ``errors``, the others still report.
A node whose simulator stopped publishing (its process is gone, or it missed several heartbeats)
fails the whole sample: frozen values are never served as current (``stale_reason``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from npuobs.devices.base import (
    BackendError,
    DeviceBackend,
    DeviceInfo,
    DeviceReading,
    Histogram,
    OpStats,
    Snapshot,
    WorkloadReading,
)
from npuobs.devices.options import BackendOptions
from npuobs.devices.registry import register
from npuobs.schema import LATENCY_BUCKETS
from npuobs.simulator.state import StateError, device_dir, read_device_state, stale_reason
from npuobs.statedoc import DeviceState, RuntimeState


@dataclass(frozen=True)
class SimOptions(BackendOptions):
    """The simulated node to read (``node``, required) and the fleet's state directory."""

    state_dir: Path | None = None


@register("sim", options=SimOptions)
class SimBackend(DeviceBackend):
    name = "sim"

    def __init__(self, *, state_dir: str | Path | None, node: str) -> None:
        if state_dir is None:
            raise BackendError("the sim backend needs the fleet's state directory (--state-dir)")
        if not node:
            raise BackendError("the sim backend needs the node name whose devices it reads (--node)")
        self.state_dir = Path(state_dir)
        self.node = node

    @property
    def _dir(self) -> Path:
        return device_dir(self.state_dir, self.node)

    def _files(self) -> list[Path]:
        if not self._dir.is_dir():
            raise BackendError(f"no simulated node {self.node!r}: {self._dir} does not exist "
                               f"(is `npuobs sim run --state-dir {self.state_dir}` running?)")
        return sorted(self._dir.glob("*.json"), key=lambda p: (len(p.stem), p.stem))

    def discover(self) -> tuple[DeviceInfo, ...]:
        return tuple(r.info for r in self.sample().devices)

    def sample(self) -> Snapshot:
        devices, workloads, errors, stale = [], [], {}, None
        for path in self._files():
            try:
                state = read_device_state(path)
            except FileNotFoundError:
                continue  # vanished between listing and reading
            except StateError as exc:
                errors[path.stem] = str(exc)
                devices.append(DeviceReading(info=DeviceInfo(device=path.stem, vendor="sim", model="unknown"),
                                             up=False))
                continue
            stale = stale or stale_reason(state.publisher)
            reading, work = reading_from_state(state)
            devices.append(reading)
            workloads.extend(work)
        if stale:
            # frozen values must not pass for fresh ones: the whole sample fails, so the exporter
            # reports success 0 and drops every device series of this node
            raise BackendError(f"simulated node {self.node!r}: state in {self._dir} is stale: {stale}")
        return Snapshot.now(self.name, tuple(devices), tuple(workloads), errors=errors)


def reading_from_state(state: DeviceState) -> tuple[DeviceReading, list[WorkloadReading]]:
    """One device document → a reading and its runtime workloads."""
    info = DeviceInfo(device=state.device, vendor=state.vendor, model=state.model, uuid=state.uuid,
                      driver_version=state.driver_version, firmware_version=state.firmware_version,
                      runtime_version=state.runtime_version)
    c, s = state.counters, state.sensors
    reading = DeviceReading(
        info=info,
        up=state.state == "online",
        healthy=s.healthy if s else None,
        temperature_celsius=s.temperature_celsius if s else None,
        temperature_throttle_threshold_celsius=s.temperature_throttle_threshold_celsius if s else None,
        power_watts=s.power_watts if s else None,
        power_limit_watts=s.power_limit_watts if s else None,
        utilization_ratio=s.utilization_ratio if s else None,
        clock_hertz=s.clock_hertz if s else None,
        clock_max_hertz=s.clock_max_hertz if s else None,
        memory_used_bytes=s.memory_used_bytes if s else None,
        memory_total_bytes=s.memory_total_bytes if s else None,
        throttled=any(s.throttle_reasons.values()) if s else None,
        throttle_reasons=dict(s.throttle_reasons) if s else {},
        energy_joules_total=c.energy_joules_total,
        ops={(o.op, o.placement): OpStats(o.count, o.seconds) for o in c.ops},
        resets_total=dict(c.resets_total),
        errors_total=dict(c.errors_total),
        oom_events_total=c.oom_events_total,
        counters_epoch_started_at=c.epoch_started_at,
    )
    return reading, _workloads(info.device, state.runtime)


def _workloads(device: str, rt: RuntimeState) -> list[WorkloadReading]:
    out = []
    for tenant, t in rt.tenants.items():
        if len(t.buckets) != len(LATENCY_BUCKETS) + 1:
            continue  # a histogram with other buckets than the schema's cannot be served
        cumulative, running = [], 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), t.buckets, strict=True):
            running += n
            cumulative.append((bound, running))
        canary = tenant == "canary"
        out.append(WorkloadReading(
            device=device, model=rt.model, tenant=tenant,
            latency=Histogram(tuple(cumulative), t.sum),
            requests_total=dict(t.requests),
            queue_length=t.queue_length,
            model_load_seconds=rt.model_load_seconds,
            cold_starts_total=t.cold_starts,
            accuracy_delta_ratio=rt.accuracy_delta_ratio if canary else None,
            golden_checks_total=rt.golden_checks_total if canary else 0,
            golden_mismatches_total=rt.golden_mismatches_total if canary else 0,
            latency_exemplar=(t.exemplar[0], t.exemplar[1]) if t.exemplar else None,
        ))
    return out

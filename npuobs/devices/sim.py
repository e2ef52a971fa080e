"""The simulated backend: reads the driver-like state tree one simulated node publishes.

It is the simulator's "SMI tool": a reader that keeps no state of its own, so the counters it
reports (resets, errors, OOMs, energy) are the driver's persisted ones and survive a restart of
the exporter. A device whose file says ``offline`` is reported ``up=False`` with no sensor
values; a device whose file is gone has vanished and is not reported at all; one unreadable file
makes that one device ``up=False`` and is listed in the snapshot's ``errors``, the others still report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from npuobs.simulator.state import StateError, device_dir, read_json

_SENSOR_FIELDS = (
    "temperature_celsius", "temperature_throttle_threshold_celsius", "power_watts", "power_limit_watts",
    "utilization_ratio", "clock_hertz", "clock_max_hertz",
)


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
        devices, workloads, errors = [], [], {}
        for path in self._files():
            try:
                doc = read_json(path)
                reading, work = parse_device_state(doc, str(path))
            except FileNotFoundError:
                continue  # vanished between listing and reading
            except (StateError, BackendError) as exc:
                errors[path.stem] = str(exc)
                devices.append(DeviceReading(info=DeviceInfo(device=path.stem, vendor="sim", model="unknown"),
                                             up=False))
                continue
            devices.append(reading)
            workloads.extend(work)
        return Snapshot.now(self.name, tuple(devices), tuple(workloads), errors=errors)


def parse_device_state(doc: Any, where: str) -> tuple[DeviceReading, list[WorkloadReading]]:
    """One device document → a reading and its runtime workloads; BackendError names the file."""
    try:
        info = DeviceInfo(device=str(doc["device"]), vendor=str(doc["vendor"]), model=str(doc["model"]),
                          uuid=str(doc.get("uuid", "")), driver_version=str(doc.get("driver_version", "")),
                          firmware_version=str(doc.get("firmware_version", "")),
                          runtime_version=str(doc.get("runtime_version", "")))
        c = doc["counters"]
        sensors = doc.get("sensors") or {}
        online = doc.get("state") == "online"
        ops = {(o["op"], o["placement"]): OpStats(int(o["count"]), float(o["seconds"])) for o in c.get("ops", [])}
        values = {k: (float(sensors[k]) if sensors.get(k) is not None else None) for k in _SENSOR_FIELDS}
        reading = DeviceReading(
            info=info,
            up=online,
            healthy=bool(sensors["healthy"]) if "healthy" in sensors else None,
            energy_joules_total=float(c["energy_joules_total"]),
            memory_used_bytes=int(sensors["memory_used_bytes"]) if "memory_used_bytes" in sensors else None,
            memory_total_bytes=int(sensors["memory_total_bytes"]) if "memory_total_bytes" in sensors else None,
            throttled=any(sensors["throttle_reasons"].values()) if "throttle_reasons" in sensors else None,
            throttle_reasons={str(k): bool(v) for k, v in sensors.get("throttle_reasons", {}).items()},
            ops=ops,
            resets_total={str(k): int(v) for k, v in c["resets_total"].items()},
            errors_total={str(k): int(v) for k, v in c["errors_total"].items()},
            oom_events_total=int(c["oom_events_total"]),
            **values,
        )
        workloads = _workloads(info.device, doc["runtime"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BackendError(f"{where}: malformed device state ({type(exc).__name__}: {exc})") from exc
    return reading, workloads


def _workloads(device: str, rt: dict[str, Any]) -> list[WorkloadReading]:
    out = []
    for tenant, t in rt["tenants"].items():
        counts = [int(x) for x in t["buckets"]]
        if len(counts) != len(LATENCY_BUCKETS) + 1:
            raise ValueError(f"tenant {tenant}: {len(counts)} latency buckets, expected {len(LATENCY_BUCKETS) + 1}")
        cumulative, running = [], 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
            running += n
            cumulative.append((bound, running))
        canary = tenant == "canary"
        exemplar = t.get("exemplar")
        out.append(WorkloadReading(
            device=device, model=str(rt["model"]), tenant=str(tenant),
            latency=Histogram(tuple(cumulative), float(t["sum"])),
            requests_total={str(k): int(v) for k, v in t["requests"].items()},
            queue_length=int(t["queue_length"]),
            model_load_seconds=float(rt["model_load_seconds"]) if rt.get("model_load_seconds") is not None else None,
            cold_starts_total=int(t["cold_starts"]),
            accuracy_delta_ratio=(float(rt["accuracy_delta_ratio"])
                                  if canary and rt.get("accuracy_delta_ratio") is not None else None),
            golden_checks_total=int(rt["golden_checks_total"]) if canary else 0,
            golden_mismatches_total=int(rt["golden_mismatches_total"]) if canary else 0,
            latency_exemplar=(str(exemplar[0]), float(exemplar[1])) if exemplar else None,
        ))
    return out

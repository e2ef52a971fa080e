"""Device series: presence, identity, sensors and the driver's cumulative counters.

A ``None`` reading produces no series (a fake 0 °C pages someone). Counters come straight from
the backend, which reads the driver's persisted totals, so they survive exporter restarts. A
device that was seen before and is missing from this snapshot has vanished: it keeps exactly
one series, ``npu_device_up 0``, so "the device went away" is visible and alertable, and none of
its old values linger (dcgm-exporter keeps serving a vanished GPU's last values).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.core import Metric

from npuobs.devices.base import Snapshot
from npuobs.exporter.families import Inputs, builder
from npuobs.families import add_ops, family, non_empty

# reading attribute -> gauge, for the plain numeric readings
_GAUGES = (
    ("temperature_celsius", "npu_temperature_celsius"),
    ("temperature_throttle_threshold_celsius", "npu_temperature_throttle_threshold_celsius"),
    ("power_watts", "npu_power_watts"),
    ("power_limit_watts", "npu_power_limit_watts"),
    ("utilization_ratio", "npu_utilization_ratio"),
    ("memory_used_bytes", "npu_memory_used_bytes"),
    ("memory_total_bytes", "npu_memory_total_bytes"),
    ("clock_hertz", "npu_clock_hertz"),
    ("clock_max_hertz", "npu_clock_max_hertz"),
    ("counters_epoch_started_at", "npu_counters_epoch_start_timestamp_seconds"),
)


@builder("device")
def _from_inputs(inputs: Inputs) -> list[Metric]:
    return build(inputs.node, inputs.snapshot, inputs.vanished)


def build(node: str, snapshot: Snapshot | None, vanished: Mapping[str, str]) -> list[Metric]:
    """Families for every device in ``snapshot`` plus ``up 0`` for ``vanished`` (device -> vendor)."""
    up, healthy, info = family("npu_device_up"), family("npu_device_healthy"), family("npu_device_info")
    gauges = {name: family(name) for _, name in _GAUGES}
    energy, throttled = family("npu_energy_joules_total"), family("npu_throttled")
    reasons, ops, op_seconds = (family("npu_throttle_reason_active"), family("npu_ops_total"),
                                family("npu_op_seconds_total"))
    resets, errors, ooms = family("npu_resets_total"), family("npu_errors_total"), family("npu_oom_events_total")
    backend = snapshot.backend if snapshot else ""
    for r in snapshot.devices if snapshot else ():
        key = [node, r.info.device, r.info.vendor]
        up.add_metric(key, 1.0 if r.up else 0.0)
        i = r.info
        info.add_metric([*key, i.model, i.uuid, i.driver_version, i.firmware_version, i.runtime_version, backend], {})
        if r.healthy is not None:
            healthy.add_metric(key, 1.0 if r.healthy else 0.0)
        for attr, name in _GAUGES:
            value = getattr(r, attr)
            if value is not None:
                gauges[name].add_metric(key, float(value))
        if r.energy_joules_total is not None:
            energy.add_metric(key, r.energy_joules_total)
        if r.throttled is not None:
            throttled.add_metric(key, 1.0 if r.throttled else 0.0)
        for reason, active in sorted(r.throttle_reasons.items()):
            reasons.add_metric([*key, reason], 1.0 if active else 0.0)
        add_ops(ops, op_seconds, key, ((k, s.count, s.seconds) for k, s in r.ops.items()))
        for reason, n in sorted(r.resets_total.items()):
            resets.add_metric([*key, reason], float(n))
        for kind, n in sorted(r.errors_total.items()):
            errors.add_metric([*key, kind], float(n))
        if r.oom_events_total is not None:
            ooms.add_metric(key, float(r.oom_events_total))
    for device, vendor in sorted(vanished.items()):
        up.add_metric([node, device, vendor], 0.0)
    return non_empty([up, healthy, info, *gauges.values(), energy, throttled, reasons, ops, op_seconds,
                      resets, errors, ooms])

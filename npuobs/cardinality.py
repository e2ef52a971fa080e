"""Worst-case series counts per cardinality profile, computed from the schema alone.

Why a computation and not a measurement: a simulated node emits only the throttle reasons, error
kinds and outcomes it happens to see, so a scrape undercounts what a bad day costs the TSDB. Here
every bounded label takes all of its values (the closed enumerations of ``npuobs.schema``, the
latency buckets) and the deployment-shaped ones (devices, tenants, models, op kinds, collectors,
containers per device) come from a :class:`Shape`. ``docs/metrics.md`` prints the table; a test
checks the real exporter's scrape never exceeds it and that ``standard`` meets the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from npuobs import schema
from npuobs.schema import MetricSpec, MetricType, Profile


@dataclass(frozen=True)
class Shape:
    """The deployment a count is for: one node's devices and what runs on them."""

    devices: int = 8
    tenants: int = 4  # the simulator's three tenants plus the canary
    models: int = 1  # served ML models per device
    ops: int = 7  # op kinds of the served graph (the simulator's digits MLP has 7)
    collectors: int = 2  # the backend and the kubelet PodResources watcher
    containers_per_device: int = 1


# Labels fixed by the device (one value per device) or by the node.
_ONE_PER_DEVICE = frozenset({"node", "vendor", "uuid", "driver_version", "firmware_version", "runtime_version",
                             "backend", "version", "namespace", "pod", "claim"})


def _values(spec: MetricSpec, label: str, shape: Shape) -> int:
    """How many values ``label`` takes on one node for ``spec``."""
    if label == "device":
        return shape.devices
    if label == "tenant":
        return shape.tenants
    if label == "model":  # the hardware model on info series, one per device; the served model elsewhere
        return 1 if spec.type is MetricType.INFO else shape.models
    if label == "reason":
        return len(schema.RESET_REASONS if spec.name == "npu_resets_total" else schema.THROTTLE_REASONS)
    if label == "kind":
        return len(schema.ERROR_KINDS)
    if label == "outcome":
        return len(schema.REQUEST_OUTCOMES)
    if label == "placement":
        return len(schema.OP_PLACEMENTS)
    if label == "op":
        return shape.ops
    if label == "collector":
        return shape.collectors
    if label == "container":
        return shape.containers_per_device
    if label in _ONE_PER_DEVICE:
        return 1
    raise KeyError(f"{spec.name}: no cardinality known for label {label!r} (add it to npuobs/cardinality.py)")


def is_per_node(spec: MetricSpec) -> bool:
    """Series every node's exporter serves (they carry ``node``); the rest are one per fleet."""
    return "node" in spec.labels


def series(spec: MetricSpec, profile: Profile | str, shape: Shape = Shape()) -> int:
    """Worst-case series of ``spec`` on one node under ``profile`` (0 when the profile omits it, or
    when the metric is not a per-node series, like the remediation controller's own counters)."""
    if not spec.emitted_in(profile) or not is_per_node(spec):
        return 0
    n = 1
    for label in spec.labels_in(profile):
        n *= _values(spec, label, shape)
    if spec.type is MetricType.HISTOGRAM:
        n *= len(schema.LATENCY_BUCKETS) + 3  # each bucket, +Inf, _sum, _count
    return n


def node_series(profile: Profile | str, shape: Shape = Shape()) -> int:
    return sum(series(spec, profile, shape) for spec in schema.METRICS)


def per_device(profile: Profile | str, shape: Shape = Shape()) -> float:
    """All series of a node divided by its devices: the figure the issue's budget is stated in."""
    return node_series(profile, shape) / shape.devices

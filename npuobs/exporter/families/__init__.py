"""Pure family builders: one sample's immutable inputs in, Prometheus metric families out.

One module per concern, as node_exporter's ``collector/`` directory has one per source, except
that these never fail, do no I/O and keep no state (the data sources that can fail are run by
``npuobs.devices.source``): ``device`` (sensors, counters, identity, vanished devices),
``workload`` (the inference runtime), ``pods`` (kubelet pod attribution) and ``selfmetrics``
(every source's health). Each registers one builder with :func:`builder`; :func:`build` runs
them all, in registration order, over one :class:`Inputs`, which is what the exporter renders
after every sample and what the golden exposition test pins down.

Every family is made by ``npuobs.families.family`` from the metric's schema entry, so a name,
type, help text or label set that is not in ``npuobs.schema`` cannot be emitted by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from prometheus_client.core import Metric

from npuobs.devices.base import Snapshot
from npuobs.devices.source import SourceStatus
from npuobs.exporter.podresources.client import PodAttribution


@dataclass(frozen=True)
class Inputs:
    """Everything the families of one exposition are built from."""

    node: str
    snapshot: Snapshot | None  # None: the sample failed, no device or workload series
    statuses: Mapping[str, SourceStatus]  # per source, for the npuobs_collector_* series
    version: str
    vanished: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # device -> vendor
    attribution: PodAttribution | None = None  # None: pod attribution off or failed
    resource_names: Mapping[str, Iterable[str]] = field(default_factory=lambda: MappingProxyType({}))
    driver_names: Mapping[str, Iterable[str]] = field(default_factory=lambda: MappingProxyType({}))  # DRA


Builder = Callable[[Inputs], list[Metric]]

BUILDERS: list[tuple[str, Builder]] = []


def builder(name: str) -> Callable[[Builder], Builder]:
    """Register a family builder under ``name`` (the order of registration is the exposition's order)."""

    def decorate(fn: Builder) -> Builder:
        BUILDERS.append((name, fn))
        return fn

    return decorate


def build(inputs: Inputs) -> list[Metric]:
    """Every registered builder's families for ``inputs``."""
    out: list[Metric] = []
    for _, fn in BUILDERS:
        out += fn(inputs)
    return out


# registration order = exposition order
from npuobs.exporter.families import device, workload, pods, selfmetrics  # noqa: E402, F401, I001

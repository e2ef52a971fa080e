"""The device abstraction: typed readings and the interface every backend implements.

A backend turns whatever its vendor offers (a library, an SMI tool's output, the simulator's
driver-like state files) into ``DeviceReading`` values in base units. A field a backend cannot
read stays ``None`` and its metric is simply absent: a fake zero would page someone for a
temperature of 0 °C or hide an outage behind a utilization of 0.

Readings are frozen: the exporter's sampler builds one ``Snapshot`` per interval and every scrape
renders that immutable object, so a scrape never sees half an update.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

_EMPTY: Mapping = MappingProxyType({})


def _empty() -> Mapping:
    """The shared read-only empty mapping, as a factory: before Python 3.12 a mappingproxy is
    unhashable, and dataclasses reject unhashable values as plain field defaults."""
    return _EMPTY


class BackendError(Exception):
    """A backend could not produce a reading; the message names the tool/file and what went wrong."""


class ChildrenFailed(BackendError):
    """Every child source of a composite backend failed; ``children`` says how each one did, so
    the runner reports each child as failing too (not only the parent)."""

    def __init__(self, message: str, children: tuple[SourceResult, ...]) -> None:
        super().__init__(message)
        self.children = children


@dataclass(frozen=True)
class DeviceInfo:
    """Identity and versions of one device: goes to the ``npu_device_info`` metric only."""

    device: str  # stable per-node id used as the ``device`` label, e.g. "0"
    vendor: str  # "furiosa", "rebellions", "aws", "intel", "amd", "google", "nvidia", "sim"
    model: str  # hardware model, e.g. "RNGD", "ATOM", "H100 80GB HBM3"
    uuid: str = ""
    driver_version: str = ""
    firmware_version: str = ""
    runtime_version: str = ""
    # device id of the physical device this one is a partition of (an NVIDIA MIG instance); ""
    # for a whole device
    parent: str = ""


@dataclass(frozen=True)
class OpStats:
    """Cumulative op execution by op kind and placement ("device" | "host")."""

    count: int
    seconds: float


@dataclass(frozen=True)
class DeviceReading:
    """One device at one instant, in base units; ``None`` means "this backend cannot tell"."""

    info: DeviceInfo
    up: bool
    healthy: bool | None = None
    temperature_celsius: float | None = None
    temperature_throttle_threshold_celsius: float | None = None
    power_watts: float | None = None
    power_limit_watts: float | None = None
    energy_joules_total: float | None = None
    utilization_ratio: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    clock_hertz: float | None = None
    clock_max_hertz: float | None = None
    throttled: bool | None = None
    # reason -> active; only reasons the backend can report are present
    throttle_reasons: Mapping[str, bool] = field(default_factory=_empty)
    # (op, placement) -> cumulative stats
    ops: Mapping[tuple[str, str], OpStats] = field(default_factory=_empty)
    # cumulative event counters; an absent key means "not reported", not zero
    resets_total: Mapping[str, int] = field(default_factory=_empty)
    errors_total: Mapping[str, int] = field(default_factory=_empty)
    oom_events_total: int | None = None
    # when the cumulative counters last started from zero (a driver that persists them says so)
    counters_epoch_started_at: float | None = None


@dataclass(frozen=True)
class Histogram:
    """A cumulative histogram: ``buckets`` are (upper bound, cumulative count), +Inf last."""

    buckets: tuple[tuple[float, int], ...]
    sum: float

    @property
    def count(self) -> int:
        return self.buckets[-1][1] if self.buckets else 0


@dataclass(frozen=True)
class WorkloadReading:
    """Runtime (inference server) metrics for one (device, served model, tenant)."""

    device: str
    model: str
    tenant: str
    latency: Histogram
    requests_total: Mapping[str, int]  # outcome -> count
    queue_length: int
    model_load_seconds: float | None = None
    cold_starts_total: int = 0
    accuracy_delta_ratio: float | None = None
    golden_checks_total: int = 0
    golden_mismatches_total: int = 0
    # exemplar for the slowest recent request: (trace_id, latency_seconds)
    latency_exemplar: tuple[str, float] | None = None


@dataclass(frozen=True)
class SourceResult:
    """How one data source (a backend, a child of ``auto``, PodResources) fared in one run.

    What node_exporter reports per collector: success (``error is None``), how long it took and,
    for a source made of sources (``auto``), each child's own result, so a failing child is
    reported as failing even when its siblings (or its parent) succeed.
    """

    source: str
    started_at: float  # unix time
    duration: float  # seconds
    error: str | None = None
    children: tuple[SourceResult, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Snapshot:
    """Everything one backend read in one sample, with when it was taken.

    ``errors`` are the partial failures of a sample that still returned: device id (or a
    sub-command such as ``hl-smi -Q``) -> message for what could not be read (a device is then
    reported ``up=False`` or left out, a sub-command's fields are absent). ``children``
    holds the result of every child source of a composite backend (``auto``): their devices are
    merged into this snapshot, their failures are theirs, not this backend's.
    """

    backend: str
    taken_at: float
    devices: tuple[DeviceReading, ...]
    workloads: tuple[WorkloadReading, ...] = ()
    errors: Mapping[str, str] = field(default_factory=_empty)
    children: tuple[SourceResult, ...] = ()

    @classmethod
    def now(cls, backend: str, devices: tuple[DeviceReading, ...], workloads: tuple[WorkloadReading, ...] = (),
            *, errors: Mapping[str, str] | None = None, children: tuple[SourceResult, ...] = ()) -> Snapshot:
        return cls(backend, time.time(), devices, workloads,
                   MappingProxyType(dict(errors)) if errors else _EMPTY, children)


class DeviceBackend(ABC):
    """One source of device readings (a vendor tool, a library, the simulator).

    ``discover()`` lists the devices present now; ``sample()`` reads them all. Both raise
    ``BackendError`` with a message naming the tool or file when the source is unusable; a single
    bad device should instead come back as a reading with ``up=False`` so the others still report.
    """

    name: str = "base"

    @abstractmethod
    def discover(self) -> tuple[DeviceInfo, ...]:
        """Devices this backend can see right now."""

    @abstractmethod
    def sample(self) -> Snapshot:
        """Read every device (and, where the backend has them, runtime workloads)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release handles (libraries, subprocesses); the default has nothing to release."""


class ReadingsBackend(DeviceBackend):
    """A backend whose every call is one full read of its source (a vendor CLI or library).

    Vendor tools report identity and readings in the same output, so ``discover()`` and
    ``sample()`` are the same read; subclasses implement ``_read()`` only. A ``_read()`` that kept
    going past a failed part (one of two sub-commands) names it in ``last_errors`` (part ->
    message), which ``sample()`` hands on as the snapshot's ``errors``: the backend's own
    bookkeeping for one read, never something callers look up on the backend.
    """

    last_errors: Mapping[str, str] = _EMPTY

    @abstractmethod
    def _read(self) -> tuple[DeviceReading, ...]:
        """Every device the source reports, read now."""

    def discover(self) -> tuple[DeviceInfo, ...]:
        return tuple(r.info for r in self._read())

    def sample(self) -> Snapshot:
        self.last_errors = {}
        readings = self._read()
        return Snapshot.now(self.name, readings, errors=self.last_errors)


class ToolBackend(ReadingsBackend):
    """A ReadingsBackend over one vendor CLI, built from ``ToolOptions`` (``npuobs.devices.options``)."""

    def __init__(self, *, node: str = "", tool_path: str | None = None, timeout: float = 5.0) -> None:
        self.node = node
        self.timeout = timeout
        self._tool_path = tool_path

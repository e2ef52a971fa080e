"""The device state document: what the simulator publishes per device and the ``sim`` backend reads.

One typed document, written and read by this module only: the simulator builds a
:class:`DeviceState` (its runtime part from the instrumentation's ``MemoryStore``), ``to_json()``
turns it into the JSON object stored in ``nodes/<node>/devices/<id>.json``, and
:meth:`DeviceState.from_json` is the only parser (the ``sim`` backend, the simulator restoring its
counters after a restart, ``npuobs sim status``). A key added here is added for every reader at
once, which is why it lives below the simulator, the instrumentation library and the backends.

Versions: 1 was the untyped dict (no publisher, no counter epoch; still read); 2 adds
``publisher`` (who writes the file, how often, so a reader can tell a dead or hung simulator from a
live one) and ``counters.epoch_started_at`` (when the cumulative counters last started from zero).
A document of a newer version than this module knows is refused rather than half-read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from npuobs.errors import UsageError

DOCUMENT_VERSION = 2
READABLE_VERSIONS = (1, 2)
DEVICE_STATES = ("online", "offline")

T = TypeVar("T")


class DocumentError(ValueError, UsageError):
    """A device state document that is not one this module wrote; the message names where and what."""


@dataclass(frozen=True)
class TenantRuntime:
    """Cumulative runtime series of one tenant; ``buckets`` are per-bucket counts, +Inf last."""

    buckets: tuple[int, ...]
    sum: float
    requests: dict[str, int]
    cold_starts: int
    queue_length: int
    exemplar: tuple[str, float, float] | None = None  # (trace id, seconds, unix time)


@dataclass(frozen=True)
class RuntimeState:
    """The inference runtime's series of one device (``MemoryStore.runtime_state()``)."""

    model: str
    queue_length: int = 0
    model_load_seconds: float | None = None
    accuracy_delta_ratio: float | None = None
    golden_checks_total: int = 0
    golden_mismatches_total: int = 0
    tenants: dict[str, TenantRuntime] = field(default_factory=dict)


@dataclass(frozen=True)
class OpCount:
    op: str
    placement: str
    count: int
    seconds: float


@dataclass(frozen=True)
class Counters:
    """The driver's persisted cumulative counters; they continue across simulator restarts."""

    energy_joules_total: float = 0.0
    resets_total: dict[str, int] = field(default_factory=dict)
    errors_total: dict[str, int] = field(default_factory=dict)
    oom_events_total: int = 0
    ops: tuple[OpCount, ...] = ()
    applied_resets: tuple[str, ...] = ()  # ids of RESET faults already counted (a fault counts once)
    # virtual time at which these counters last started from zero (None: a version-1 document)
    epoch_started_at: float | None = None


@dataclass(frozen=True)
class Sensors:
    """Instantaneous readings; present only while the device is online."""

    healthy: bool
    temperature_celsius: float
    temperature_throttle_threshold_celsius: float
    power_watts: float
    power_limit_watts: float
    utilization_ratio: float
    memory_used_bytes: int
    memory_total_bytes: int
    clock_hertz: float
    clock_max_hertz: float
    throttle_reasons: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Publisher:
    """Who writes the document and how often, so a reader can tell when nobody does any more.

    ``pid`` is only meaningful to a reader in the same PID namespace on the same boot; ``started_at``
    (the process's start time) tells a reused pid from the writer. ``heartbeat_seconds`` is the wall
    time between publications while the simulator runs; ``None`` means the writer finished its run
    on purpose and will not publish again (its values stay valid while the process lives).
    """

    pid: int
    started_at: float
    pid_namespace: str
    boot_id: str
    published_at: float  # unix (wall) time of this publication
    heartbeat_seconds: float | None


@dataclass(frozen=True)
class DeviceState:
    """One device's published state (the SMI-like document of the simulated driver)."""

    device: str
    vendor: str
    model: str
    uuid: str
    driver_version: str
    firmware_version: str
    runtime_version: str
    state: str  # one of DEVICE_STATES
    updated_at: float  # virtual time of the simulation
    counters: Counters
    runtime: RuntimeState
    sensors: Sensors | None = None
    publisher: Publisher | None = None
    version: int = DOCUMENT_VERSION

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        if self.sensors is None:
            del doc["sensors"]
        return doc

    @classmethod
    def from_json(cls, doc: Any, where: str) -> DeviceState:
        """Parse and validate; every problem is a DocumentError naming ``where`` and the key."""
        r = _Reader(where)
        obj = r.obj(doc, "")
        version = r.count(obj.get("version", 1), "version")
        if version not in READABLE_VERSIONS:
            raise DocumentError(f"{where}: device state version {version} is not one this npuobs reads "
                                f"({', '.join(map(str, READABLE_VERSIONS))}); upgrade npuobs")
        state = r.str_(r.key(obj, "state", ""), "state")
        if state not in DEVICE_STATES:
            raise DocumentError(f"{where}: state: expected one of {', '.join(DEVICE_STATES)}, got {state!r}")
        sensors = obj.get("sensors")
        publisher = obj.get("publisher")
        return cls(
            device=r.str_(r.key(obj, "device", ""), "device"),
            vendor=r.str_(r.key(obj, "vendor", ""), "vendor"),
            model=r.str_(r.key(obj, "model", ""), "model"),
            uuid=r.str_(obj.get("uuid", ""), "uuid"),
            driver_version=r.str_(obj.get("driver_version", ""), "driver_version"),
            firmware_version=r.str_(obj.get("firmware_version", ""), "firmware_version"),
            runtime_version=r.str_(obj.get("runtime_version", ""), "runtime_version"),
            state=state,
            updated_at=r.num(obj.get("updated_at", 0.0), "updated_at"),
            counters=_counters(r, r.obj(r.key(obj, "counters", ""), "counters")),
            runtime=runtime_from_json(r.key(obj, "runtime", ""), where),
            sensors=None if sensors is None else _sensors(r, r.obj(sensors, "sensors")),
            publisher=None if publisher is None else _publisher(r, r.obj(publisher, "publisher")),
            version=DOCUMENT_VERSION,
        )


def runtime_from_json(doc: Any, where: str, path: str = "runtime") -> RuntimeState:
    r = _Reader(where)
    obj = r.obj(doc, path)
    tenants = {}
    for name, t in r.obj(obj.get("tenants", {}), f"{path}.tenants").items():
        p = f"{path}.tenants.{name}"
        t = r.obj(t, p)
        ex = t.get("exemplar")
        exemplar = None
        if ex is not None:
            items = r.list_(ex, f"{p}.exemplar")
            if len(items) not in (2, 3):
                raise DocumentError(f"{where}: {p}.exemplar: expected [trace_id, seconds, unix time]")
            exemplar = (r.str_(items[0], f"{p}.exemplar[0]"), r.num(items[1], f"{p}.exemplar[1]"),
                        r.num(items[2], f"{p}.exemplar[2]") if len(items) == 3 else 0.0)
        tenants[str(name)] = TenantRuntime(
            buckets=tuple(r.count(x, f"{p}.buckets") for x in r.list_(r.key(t, "buckets", p), f"{p}.buckets")),
            sum=r.num(r.key(t, "sum", p), f"{p}.sum"),
            requests=r.counts(r.key(t, "requests", p), f"{p}.requests"),
            cold_starts=r.count(t.get("cold_starts", 0), f"{p}.cold_starts"),
            queue_length=r.count(t.get("queue_length", 0), f"{p}.queue_length"),
            exemplar=exemplar,
        )
    return RuntimeState(
        model=r.str_(obj.get("model", ""), f"{path}.model"),
        queue_length=r.count(obj.get("queue_length", 0), f"{path}.queue_length"),
        model_load_seconds=r.opt(obj.get("model_load_seconds"), r.num, f"{path}.model_load_seconds"),
        accuracy_delta_ratio=r.opt(obj.get("accuracy_delta_ratio"), r.num, f"{path}.accuracy_delta_ratio"),
        golden_checks_total=r.count(obj.get("golden_checks_total", 0), f"{path}.golden_checks_total"),
        golden_mismatches_total=r.count(obj.get("golden_mismatches_total", 0), f"{path}.golden_mismatches_total"),
        tenants=tenants,
    )


def ops_from_json(doc: Any, where: str, path: str = "counters.ops") -> tuple[OpCount, ...]:
    r = _Reader(where)
    out = []
    for i, o in enumerate(r.list_(doc, path)):
        p = f"{path}[{i}]"
        o = r.obj(o, p)
        out.append(OpCount(op=r.str_(r.key(o, "op", p), f"{p}.op"),
                           placement=r.str_(r.key(o, "placement", p), f"{p}.placement"),
                           count=r.count(r.key(o, "count", p), f"{p}.count"),
                           seconds=r.num(r.key(o, "seconds", p), f"{p}.seconds")))
    return tuple(out)


def _counters(r: _Reader, c: dict[str, Any]) -> Counters:
    return Counters(
        energy_joules_total=r.num(r.key(c, "energy_joules_total", "counters"), "counters.energy_joules_total"),
        resets_total=r.counts(r.key(c, "resets_total", "counters"), "counters.resets_total"),
        errors_total=r.counts(r.key(c, "errors_total", "counters"), "counters.errors_total"),
        oom_events_total=r.count(r.key(c, "oom_events_total", "counters"), "counters.oom_events_total"),
        ops=ops_from_json(c.get("ops", []), r.where),
        applied_resets=tuple(r.str_(x, "counters.applied_resets")
                             for x in r.list_(c.get("applied_resets", []), "counters.applied_resets")),
        epoch_started_at=r.opt(c.get("epoch_started_at"), r.num, "counters.epoch_started_at"),
    )


def _sensors(r: _Reader, s: dict[str, Any]) -> Sensors:
    def n(key: str) -> float:
        return r.num(r.key(s, key, "sensors"), f"sensors.{key}")

    reasons = r.obj(s.get("throttle_reasons", {}), "sensors.throttle_reasons")
    return Sensors(
        healthy=r.bool_(r.key(s, "healthy", "sensors"), "sensors.healthy"),
        temperature_celsius=n("temperature_celsius"),
        temperature_throttle_threshold_celsius=n("temperature_throttle_threshold_celsius"),
        power_watts=n("power_watts"), power_limit_watts=n("power_limit_watts"),
        utilization_ratio=n("utilization_ratio"),
        memory_used_bytes=r.count(r.key(s, "memory_used_bytes", "sensors"), "sensors.memory_used_bytes"),
        memory_total_bytes=r.count(r.key(s, "memory_total_bytes", "sensors"), "sensors.memory_total_bytes"),
        clock_hertz=n("clock_hertz"), clock_max_hertz=n("clock_max_hertz"),
        throttle_reasons={str(k): r.bool_(v, f"sensors.throttle_reasons.{k}") for k, v in reasons.items()},
    )


def _publisher(r: _Reader, p: dict[str, Any]) -> Publisher:
    return Publisher(
        pid=r.count(r.key(p, "pid", "publisher"), "publisher.pid"),
        started_at=r.num(p.get("started_at", 0.0), "publisher.started_at"),
        pid_namespace=r.str_(p.get("pid_namespace", ""), "publisher.pid_namespace"),
        boot_id=r.str_(p.get("boot_id", ""), "publisher.boot_id"),
        published_at=r.num(r.key(p, "published_at", "publisher"), "publisher.published_at"),
        heartbeat_seconds=r.opt(p.get("heartbeat_seconds"), r.num, "publisher.heartbeat_seconds"),
    )


class _Reader:
    """Typed accessors that raise DocumentError naming the file and the key path."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, what: str, value: Any) -> DocumentError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return DocumentError(f"{self.where}: {path or 'document'}: expected {what}, got {shown}")

    def key(self, obj: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in obj:
            raise DocumentError(f"{self.where}: {path + '.' if path else ''}{key}: missing")
        return obj[key]

    def obj(self, v: Any, path: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(path, "an object", v)
        return v

    def list_(self, v: Any, path: str) -> list[Any] | tuple[Any, ...]:
        if not isinstance(v, list | tuple):
            raise self.fail(path, "a list", v)
        return v

    def str_(self, v: Any, path: str) -> str:
        if not isinstance(v, str):
            raise self.fail(path, "a string", v)
        return v

    def bool_(self, v: Any, path: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(path, "true or false", v)
        return v

    def num(self, v: Any, path: str) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.fail(path, "a finite number", v)
        return float(v)

    def count(self, v: Any, path: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise self.fail(path, "a non-negative integer", v)
        return v

    def counts(self, v: Any, path: str) -> dict[str, int]:
        return {str(k): self.count(n, f"{path}.{k}") for k, n in self.obj(v, path).items()}

    def opt(self, v: Any, parse: Callable[[Any, str], T], path: str) -> T | None:
        return None if v is None else parse(v, path)

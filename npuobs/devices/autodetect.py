"""Which accelerators does this host have, and the "auto" backend that reads all of them.

A fleet DaemonSet runs the same exporter on NVIDIA, FuriosaAI, Rebellions, Neuron, Gaudi, AMD and
TPU nodes; ``--backend auto`` lets one manifest serve them all. Each hardware backend registers
its ``Detection`` with its registry entry (cheap: device nodes, a library lookup, a tool on
``PATH``); ``detect()`` asks every entry, and ``AutoBackend`` samples every detected backend and
merges their snapshots.

Set ``NPUOBS_HOST_ROOT`` when the host's ``/dev`` and ``/sys`` are mounted elsewhere (a container
with the host filesystem under ``/host``, as node_exporter's ``--path.rootfs``).
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import glob
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from npuobs.devices import registry
from npuobs.devices.base import BackendError, ChildrenFailed, DeviceBackend, DeviceInfo, DeviceReading, Snapshot
from npuobs.devices.options import BackendOptions
from npuobs.devices.source import BackendSource, Source

DEFAULT_CHILD_TIMEOUT = 10.0  # seconds one vendor backend may take; the exporter passes less (see ExporterConfig)


def host_root() -> str:
    """Where the host filesystem is mounted (``/`` unless ``NPUOBS_HOST_ROOT`` says otherwise)."""
    return os.environ.get("NPUOBS_HOST_ROOT") or "/"


@dataclass(frozen=True)
class Detection:
    """The signs of one vendor on a host; any one of them counts as "present".

    A tool or library without devices (a CUDA base image on a CPU node) is a false positive that
    the backend then reports as a failing collector, which is visible; missing a real device is
    not, so detection errs towards "present".
    """

    device_globs: tuple[str, ...] = ()  # absolute patterns, resolved under ``host_root()``
    libraries: tuple[str, ...] = ()  # names for ctypes.util.find_library ("nvidia-ml")
    tools: tuple[str, ...] = ()  # executables looked up on PATH

    def present(self) -> bool:
        root = host_root()
        if any(glob.glob(os.path.join(root, pattern.lstrip("/"))) for pattern in self.device_globs):
            return True
        if any(shutil.which(tool) for tool in self.tools):
            return True
        return any(ctypes.util.find_library(lib) for lib in self.libraries)

    def describe(self) -> str:
        libraries = (f"lib{lib}" for lib in self.libraries)
        return ", ".join([*self.device_globs, *libraries, *(f"{t} on PATH" for t in self.tools)])


def detect() -> tuple[str, ...]:
    """Names of the registered backends whose vendor is present on this host, in registry order."""
    return tuple(name for name, e in registry.entries() if isinstance(e, registry.Entry) and e.detected())


def looked_for() -> str:
    """What ``detect()`` checks, for the "nothing found" message."""
    lines = []
    for name, e in registry.entries():
        if not isinstance(e, registry.Entry):
            lines.append(f"{name}: {e}")
        elif e.detection is not None:
            lines.append(f"{name}: {e.detection.describe()}")
        elif e.detect is not None:
            lines.append(f"{name}: its detect()")
    return "; ".join(lines)


def _prefixed(backend: str, reading: DeviceReading) -> DeviceReading:
    info: DeviceInfo = dataclasses.replace(reading.info, device=f"{backend}:{reading.info.device}")
    return dataclasses.replace(reading, info=info)


@dataclass(frozen=True)
class AutoOptions(BackendOptions):
    """``auto``'s own options; ``node`` and ``timeout`` also go to every child that takes them.

    ``backends`` replaces detection with a fixed list; ``child_options`` gives one child its own
    options (``{nvml: {smi_format: csv}}``), checked against that child's options class.
    """

    timeout: float = 5.0  # per vendor tool call, for children that run one
    backends: tuple[str, ...] | None = None
    child_timeout: float = DEFAULT_CHILD_TIMEOUT
    child_options: Mapping[str, Mapping[str, Any]] | None = None


@registry.register("auto", options=AutoOptions)
class AutoBackend(DeviceBackend):
    """Every detected backend at once; device ids become ``<backend>:<id>`` to stay unique.

    Each child is a source of its own (``npuobs.devices.source``): children are sampled
    concurrently, each through its own bounded run (a hung one is abandoned, not joined twice), and
    each one's result, failure or not, lands in the snapshot's ``children``, which the exporter
    reports per child; the snapshot holds the devices of the children that succeeded. Only when
    every child fails, or none is detected, does ``sample()`` raise (``ChildrenFailed`` still
    carries each child's result). Detection is retried while nothing was found, because at node
    boot the exporter can start before the driver creates its device nodes.
    """

    name = "auto"

    def __init__(self, *, node: str = "", timeout: float = 5.0, backends: Sequence[str] | None = None,
                 child_timeout: float = DEFAULT_CHILD_TIMEOUT,
                 child_options: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        if child_timeout <= 0:
            raise BackendError(f"auto: child_timeout must be > 0, got {child_timeout!r}")
        self._fixed = tuple(backends) if backends is not None else None
        self.child_timeout = child_timeout
        self._context = {"node": node, "timeout": timeout}
        self._child_options = {name: dict(values) for name, values in (child_options or {}).items()}
        for name, values in self._child_options.items():
            registry.parse_options(name, values)  # a typo fails at start-up, not at the first sample
        self._names: tuple[str, ...] = ()
        self._children: dict[str, DeviceBackend] = {}
        self._sources: dict[str, Source[Snapshot]] = {}

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends this instance samples (empty until the first sample finds some)."""
        return self._names

    def _ensure_detected(self) -> None:
        if not self._names:
            self._names = self._fixed if self._fixed is not None else detect()
        if not self._names:
            raise BackendError(f"auto: no accelerator found on this host; looked for {looked_for()}")

    def _sample_child(self, name: str) -> Snapshot:
        child = self._children.get(name)
        if child is None:
            child = registry.build(name, self._child_options.get(name), context=self._context)
            self._children[name] = child
        return child.sample()

    def _source(self, name: str) -> Source[Snapshot]:
        source = self._sources.get(name)
        if source is None:
            source = self._sources[name] = BackendSource(name, lambda: self._sample_child(name), self.child_timeout)
        return source

    def sample(self) -> Snapshot:
        """Sample every backend at once, each in its own worker, and wait for all of them at most
        ``child_timeout`` seconds: a hung vendor fails alone, with the others' devices reported."""
        self._ensure_detected()
        for name in self._names:
            self._source(name).start()
        deadline = time.monotonic() + self.child_timeout
        outcomes = {name: self._sources[name].wait(deadline - time.monotonic()) for name in self._names}
        devices: list[DeviceReading] = []
        workloads = []
        for name in self._names:  # in detection order, whichever finished first
            snap = outcomes[name].value
            if snap is not None:
                devices.extend(_prefixed(name, d) for d in snap.devices)
                workloads.extend(dataclasses.replace(w, device=f"{name}:{w.device}") for w in snap.workloads)
        children = tuple(outcomes[name].result for name in self._names)
        if all(o.value is None for o in outcomes.values()):
            detail = "; ".join(f"{c.source}: {c.error}" for c in children)
            raise ChildrenFailed(f"auto: every backend failed: {detail}", children)
        return Snapshot.now(self.name, tuple(devices), tuple(workloads), children=children)

    def discover(self) -> tuple[DeviceInfo, ...]:
        return tuple(d.info for d in self.sample().devices)

    def close(self) -> None:
        for child in self._children.values():
            child.close()
        self._children.clear()

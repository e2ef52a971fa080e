"""Which accelerators does this host have, and the "auto" backend that reads all of them.

A fleet DaemonSet runs the same exporter on NVIDIA, FuriosaAI, Rebellions, Neuron, Gaudi, AMD and
TPU nodes; ``--backend auto`` lets one manifest serve them all. Each vendor module exposes
``detect() -> bool`` (cheap: device nodes, a library lookup, a tool on ``PATH``), and
``AutoBackend`` samples every detected backend and merges their snapshots.

Set ``NPUOBS_HOST_ROOT`` when the host's ``/dev`` and ``/sys`` are mounted elsewhere (a container
with the host filesystem under ``/host``, as node_exporter's ``--path.rootfs``).
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import glob
import importlib
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from npuobs.devices import registry
from npuobs.devices.base import BackendError, DeviceBackend, DeviceInfo, DeviceReading, Snapshot
from npuobs.devices.bounded import BoundedCall, StillRunning

# Backends ``detect()`` asks, in the order their devices are listed; each lives in
# ``npuobs.devices.<name>``. Modules that do not exist (yet) or lack ``detect`` are skipped.
DETECTABLE: tuple[str, ...] = ("nvml", "furiosa", "rebellions", "neuron", "gaudi", "amd", "tpu")
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


def _vendor_module(name: str) -> Any | None:
    try:
        return importlib.import_module(f"npuobs.devices.{name}")
    except ImportError:
        return None


def detect() -> tuple[str, ...]:
    """Names of the backends whose vendor is present on this host."""
    found = []
    for name in DETECTABLE:
        check = getattr(_vendor_module(name), "detect", None)
        if callable(check) and check():
            found.append(name)
    return tuple(found)


def looked_for() -> str:
    """What ``detect()`` checks, for the "nothing found" message."""
    lines = []
    for name in DETECTABLE:
        module = _vendor_module(name)
        detection = getattr(module, "DETECTION", None)
        if module is None:
            lines.append(f"{name}: backend module not installed")
        elif isinstance(detection, Detection):
            lines.append(f"{name}: {detection.describe()}")
        elif callable(getattr(module, "detect", None)):
            lines.append(f"{name}: its detect()")
        else:
            lines.append(f"{name}: no detect() to ask")
    return "; ".join(lines)


def _prefixed(backend: str, reading: DeviceReading) -> DeviceReading:
    info: DeviceInfo = dataclasses.replace(reading.info, device=f"{backend}:{reading.info.device}")
    return dataclasses.replace(reading, info=info)


@registry.register("auto")
class AutoBackend(DeviceBackend):
    """Every detected backend at once; device ids become ``<backend>:<id>`` to stay unique.

    A backend that fails (cannot be built, its sample raises, or it hangs past ``child_timeout``)
    does not hide the others: backends are sampled concurrently, each in its own worker
    (``npuobs.devices.bounded``: a hung one is abandoned, not joined twice), and its message lands
    in ``last_errors`` (backend name -> message, for the exporter's per-collector
    self-metrics) and the snapshot holds the devices of the rest. Only when every backend fails,
    or none is detected, does ``sample()`` raise. Detection is retried while nothing was found,
    because at node boot the exporter can start before the driver creates its device nodes.
    ``backends`` replaces detection with a fixed list. Other options go to every backend, except
    the vendor-specific ``tool_path`` and ``metrics_url``: one path cannot name every vendor's
    tool, so each backend looks its own up.
    """

    name = "auto"

    def __init__(self, *, backends: Sequence[str] | None = None, child_timeout: float = DEFAULT_CHILD_TIMEOUT,
                 **options: Any) -> None:
        if child_timeout <= 0:
            raise BackendError(f"auto: child_timeout must be > 0, got {child_timeout!r}")
        self._fixed = tuple(backends) if backends is not None else None
        self.child_timeout = child_timeout
        self._options = {k: v for k, v in options.items() if k not in ("tool_path", "metrics_url")}
        self._names: tuple[str, ...] = ()
        self._children: dict[str, DeviceBackend] = {}
        self._calls: dict[str, BoundedCall[Snapshot]] = {}
        self.last_errors: dict[str, str] = {}

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends this instance samples (empty until the first sample finds some)."""
        return self._names

    def _ensure_detected(self) -> None:
        if not self._names:
            self._names = self._fixed if self._fixed is not None else detect()
        if not self._names:
            raise BackendError(f"auto: no accelerator found on this host; looked for {looked_for()}")

    def _child(self, name: str) -> DeviceBackend:
        child = self._children.get(name)
        if child is None:
            child = registry.create(name, **self._options)
            self._children[name] = child
        return child

    def sample(self) -> Snapshot:
        """Sample every backend at once, each in its own worker, and wait for all of them at most
        ``child_timeout`` seconds: a hung vendor fails alone, with the others' devices reported."""
        self._ensure_detected()
        errors: dict[str, str] = {}
        started = []
        for name in self._names:
            call = self._calls.setdefault(name, BoundedCall(f"auto-{name}", self.child_timeout))
            try:
                call.start(lambda name=name: self._child(name).sample())
                started.append(name)
            except StillRunning as exc:
                errors[name] = str(exc)
        deadline = time.monotonic() + self.child_timeout
        snaps: dict[str, Snapshot] = {}
        for name in started:
            try:
                snaps[name] = self._calls[name].wait(deadline - time.monotonic())
            except Exception as exc:  # noqa: BLE001 - one vendor's failure, whatever it is, is its own
                errors[name] = str(exc) or type(exc).__name__
        devices: list[DeviceReading] = []
        workloads = []
        for name in self._names:  # in detection order, whichever finished first
            if name in snaps:
                devices.extend(_prefixed(name, d) for d in snaps[name].devices)
                workloads.extend(dataclasses.replace(w, device=f"{name}:{w.device}") for w in snaps[name].workloads)
        self.last_errors = {n: errors[n] for n in self._names if n in errors}
        if len(errors) == len(self._names):
            detail = "; ".join(f"{n}: {m}" for n, m in self.last_errors.items())
            raise BackendError(f"auto: every backend failed: {detail}")
        return Snapshot.now(self.name, tuple(devices), tuple(workloads))

    def discover(self) -> tuple[DeviceInfo, ...]:
        return tuple(d.info for d in self.sample().devices)

    def close(self) -> None:
        for child in self._children.values():
            child.close()
        self._children.clear()

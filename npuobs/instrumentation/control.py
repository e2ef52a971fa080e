"""``ServingControl``: the serving-plane actions a remediation controller (or a person) may take.

An inference server embeds one ``ServingControl`` next to its ``Instrumentation``, consults it on
every request and registers hooks for what only it can do::

    control = ServingControl(on_reset=restart_driver, on_version=load_model_version)
    control.add_device("node-a", "0", model="resnet50")
    control.add_model("resnet50", versions=["2026-11-01"], current="2026-11-01")
    ...
    if not control.accepting("node-a", "0"):       # router: drained devices get no new requests
        pick_another_device()
    with control.in_flight("node-a", "0"):         # drain waits for these to finish
        serve(request, path=control.serving_path("resnet50"))

The actions: **drain / undrain** a device (no new requests; in-flight ones finish, and
``snapshot()`` says how many are left), **reset** a device (the server's hook restarts its
driver), **roll back** a model to its previous version (and **roll out** a new one, which is what
makes a rollback possible), **switch a model's serving path** between the accelerator and the
CPU/GPU fallback. Every action is recorded with its time so the state says what was done when.

``npuobs.instrumentation.controlserver`` exposes this object over a small authenticated HTTP API;
the simulator's fleet obeys the same object, so what the game days prove is what an embedding
server gets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

ACCELERATOR, CPU = "accelerator", "cpu"
SERVING_PATHS = (ACCELERATOR, CPU)
HISTORY_MAX = 64  # actions kept in the state (newest last)


class ControlError(Exception):
    """A refused action; ``status`` is the HTTP status the API answers with (404 unknown, 409 conflict)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Device:
    node: str
    device: str
    model: str
    drained: bool = False
    drained_at: float | None = None
    in_flight: int = 0
    resets: int = 0


@dataclass
class _Model:
    name: str
    versions: list[str]  # every version known, in rollout order
    history: list[str]  # versions served, oldest first; the last is current
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)  # per version, e.g. calibration
    path: str = ACCELERATOR

    @property
    def current(self) -> str:
        return self.history[-1]


class ServingControl:
    """Thread-safe serving-plane state plus the hooks that carry actions out.

    ``on_reset(node, device)`` restarts a device's driver; ``on_version(model, version, attributes)``
    loads a model version (rollout or rollback); ``on_path(model, path)`` switches the serving path.
    A hook that raises makes the action fail (the state is left as it was), so an API caller never
    reads success for something the server could not do.
    """

    def __init__(self, *, on_reset: Callable[[str, str], None] | None = None,
                 on_version: Callable[[str, str, Mapping[str, Any]], None] | None = None,
                 on_path: Callable[[str, str], None] | None = None, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._devices: dict[tuple[str, str], _Device] = {}
        self._models: dict[str, _Model] = {}
        self._history: list[dict[str, Any]] = []
        self.on_reset, self.on_version, self.on_path = on_reset, on_version, on_path
        self.clock = clock

    # -- registration ------------------------------------------------------------------------------
    def add_device(self, node: str, device: str, *, model: str) -> None:
        with self._lock:
            self._devices[(node, device)] = _Device(node, device, model)

    def add_model(self, name: str, *, versions: list[str], current: str | None = None,
                  attributes: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        if not versions:
            raise ValueError(f"model {name!r}: give at least one version")
        current = current or versions[-1]
        if current not in versions:
            raise ValueError(f"model {name!r}: current version {current!r} is not among {versions}")
        with self._lock:
            self._models[name] = _Model(name, list(versions), [current],
                                        {v: dict(a) for v, a in (attributes or {}).items()})

    # -- what the serving path reads on every request --------------------------------------------------
    def accepting(self, node: str, device: str) -> bool:
        """Whether the router may send a new request to this device (False while drained)."""
        d = self._devices.get((node, device))
        return d is None or not d.drained

    def serving_path(self, model: str) -> str:
        m = self._models.get(model)
        return m.path if m else ACCELERATOR

    def current_version(self, model: str) -> tuple[str, dict[str, Any]]:
        """(version, its attributes) the model serves now."""
        with self._lock:
            m = self._model(model)
            return m.current, dict(m.attributes.get(m.current, {}))

    @contextmanager
    def in_flight(self, node: str, device: str) -> Iterator[None]:
        """Count a request on the device while it runs: a drain is complete when none is left."""
        d = self._device(node, device)
        with self._lock:
            d.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                d.in_flight -= 1

    def set_in_flight(self, node: str, device: str, count: int) -> None:
        """For runtimes that know their queue (the simulator): the requests in flight right now."""
        d = self._device(node, device)
        with self._lock:
            d.in_flight = count

    # -- actions ---------------------------------------------------------------------------------------
    def drain(self, node: str, device: str, *, by: str = "") -> dict[str, Any]:
        """Stop routing new requests to the device; in-flight ones finish. Draining twice is a no-op."""
        d = self._device(node, device)
        with self._lock:
            changed = not d.drained
            if changed:
                d.drained, d.drained_at = True, self.clock()
        return self._record("drain", {"node": node, "device": device}, by, changed)

    def undrain(self, node: str, device: str, *, by: str = "") -> dict[str, Any]:
        d = self._device(node, device)
        with self._lock:
            changed = d.drained
            d.drained, d.drained_at = False, None
        return self._record("undrain", {"node": node, "device": device}, by, changed)

    def reset(self, node: str, device: str, *, by: str = "") -> dict[str, Any]:
        """Restart the device's driver through the server's hook (404 without one)."""
        d = self._device(node, device)
        if self.on_reset is None:
            raise ControlError("this server cannot reset devices (no reset hook registered)", 501)
        self.on_reset(node, device)
        with self._lock:
            d.resets += 1
        return self._record("reset", {"node": node, "device": device}, by, True)

    def rollout(self, model: str, version: str, attributes: Mapping[str, Any] | None = None, *,
                by: str = "") -> dict[str, Any]:
        """Serve ``version`` (new, or an older one again); the one served before becomes the rollback target."""
        with self._lock:
            m = self._model(model)
            if version == m.current:
                changed = False
            else:
                changed = True
                attrs = dict(attributes) if attributes is not None else m.attributes.get(version, {})
        if changed:
            if self.on_version is not None:
                self.on_version(model, version, attrs)
            with self._lock:
                if version not in m.versions:
                    m.versions.append(version)
                m.attributes[version] = attrs
                m.history = (m.history + [version])[-HISTORY_MAX:]
        return self._record("rollout", {"model": model, "version": version}, by, changed)

    def rollback(self, model: str, *, by: str = "") -> dict[str, Any]:
        """Go back to the version served before the current one (409 when there is none)."""
        with self._lock:
            m = self._model(model)
            if len(m.history) < 2:
                raise ControlError(f"model {model!r} has no previous version to roll back to "
                                   f"(serving {m.current!r} since start)")
            previous, bad = m.history[-2], m.current
            attrs = m.attributes.get(previous, {})
        if self.on_version is not None:
            self.on_version(model, previous, attrs)
        with self._lock:
            m.history = m.history[:-2] + [previous]
        return self._record("rollback", {"model": model, "version": previous, "from": bad}, by, True)

    def set_serving_path(self, model: str, path: str, *, by: str = "") -> dict[str, Any]:
        """Serve the model on the accelerator or on the CPU/GPU fallback path."""
        if path not in SERVING_PATHS:
            raise ControlError(f"unknown serving path {path!r}; choose one of: {', '.join(SERVING_PATHS)}", 400)
        with self._lock:
            m = self._model(model)
            changed = m.path != path
        if changed:
            if self.on_path is not None:
                self.on_path(model, path)
            with self._lock:
                m.path = path
        return self._record("serving_path", {"model": model, "path": path}, by, changed)

    # -- state -----------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the control knows, as JSON-ready data (what ``GET /v1/state`` answers)."""
        with self._lock:
            return {
                "devices": [{"node": d.node, "device": d.device, "model": d.model, "drained": d.drained,
                             "drained_at": d.drained_at, "in_flight": d.in_flight,
                             "drain_complete": d.drained and d.in_flight == 0, "resets": d.resets}
                            for d in self._devices.values()],
                "models": [{"model": m.name, "version": m.current, "versions": list(m.versions),
                            "previous": m.history[-2] if len(m.history) > 1 else None, "serving_path": m.path,
                            "attributes": dict(m.attributes.get(m.current, {}))}
                           for m in self._models.values()],
                "history": list(self._history),
            }

    def drained(self) -> set[tuple[str, str]]:
        with self._lock:
            return {k for k, d in self._devices.items() if d.drained}

    def _record(self, action: str, target: dict[str, str], by: str, changed: bool) -> dict[str, Any]:
        entry = {"action": action, **target, "changed": changed, "by": by, "at": self.clock()}
        with self._lock:
            self._history = (self._history + [entry])[-HISTORY_MAX:]
        return entry

    def _device(self, node: str, device: str) -> _Device:
        d = self._devices.get((node, device))
        if d is None:
            raise ControlError(f"no device {device!r} on node {node!r}", 404)
        return d

    def _model(self, model: str) -> _Model:
        m = self._models.get(model)
        if m is None:
            raise ControlError(f"no model {model!r} is served here", 404)
        return m

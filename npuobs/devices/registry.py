"""The registry of device backends: one place that knows every backend by name.

Each backend registers one entry with ``@register("name", options=..., detection=...)``: its
factory, the typed options class it is built from (``npuobs.devices.options``) and, for hardware
backends, how ``auto`` detects its vendor on a host. The CLI, the exporter and ``auto`` build
backends by name through :func:`build`, which validates the options first, without importing
vendor modules they do not need: modules listed in ``_BACKEND_MODULES`` are imported lazily, so a
missing optional library (e.g. NVML bindings) only matters to the backend that needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from npuobs.devices import options as opts
from npuobs.devices.base import BackendError, DeviceBackend
from npuobs.devices.options import BackendOptions

BackendFactory = Callable[..., DeviceBackend]


class Detectable(Protocol):
    """How a vendor shows itself on a host (``autodetect.Detection``)."""

    def present(self) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Entry:
    """One registered backend."""

    name: str
    factory: BackendFactory  # called with the options' fields as keywords
    options: type[BackendOptions]
    detection: Detectable | None = None  # None: never auto-detected (sim, auto itself)
    detect: Callable[[], bool] | None = None  # overrides ``detection.present`` where a vendor needs more

    def detected(self) -> bool:
        """Whether this backend's vendor is present on the host."""
        if self.detect is not None:
            return self.detect()
        return self.detection is not None and self.detection.present()


_ENTRIES: dict[str, Entry] = {}

# backend name -> module that registers it (imported on first use); hardware backends are
# auto-detected in this order
_BACKEND_MODULES: dict[str, str] = {
    "sim": "npuobs.devices.sim",
    "auto": "npuobs.devices.autodetect",
    "nvml": "npuobs.devices.nvml",
    "furiosa": "npuobs.devices.furiosa",
    "rebellions": "npuobs.devices.rebellions",
    "neuron": "npuobs.devices.neuron",
    "gaudi": "npuobs.devices.gaudi",
    "amd": "npuobs.devices.amd",
    "tpu": "npuobs.devices.tpu",
}


def register(name: str, *, options: type[BackendOptions] = BackendOptions, detection: Detectable | None = None,
             detect: Callable[[], bool] | None = None) -> Callable[[BackendFactory], BackendFactory]:
    """Class/function decorator adding backend ``name``, built from ``options``."""

    def decorate(factory: BackendFactory) -> BackendFactory:
        _ENTRIES[name] = Entry(name, factory, options, detection, detect)
        return factory

    return decorate


def add_backend_module(name: str, module: str) -> None:
    """Declare where a backend lives so ``build(name)`` can import it lazily."""
    _BACKEND_MODULES[name] = module


def names() -> tuple[str, ...]:
    """Every backend name that can be requested."""
    return tuple(sorted(set(_BACKEND_MODULES) | set(_ENTRIES)))


def entry(name: str) -> Entry:
    """The entry for ``name``, importing its module on first use; BackendError names the choices."""
    if name not in _ENTRIES and name in _BACKEND_MODULES:
        try:
            importlib.import_module(_BACKEND_MODULES[name])
        except ImportError as exc:
            raise BackendError(f"backend {name!r} is unavailable: {exc}") from exc
    found = _ENTRIES.get(name)
    if found is None:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(names())}")
    return found


def entries() -> tuple[tuple[str, Entry | str], ...]:
    """Every backend in registry order, each as its entry or, when its module cannot be imported, why."""
    out: list[tuple[str, Entry | str]] = []
    for name in dict.fromkeys([*_BACKEND_MODULES, *_ENTRIES]):
        try:
            out.append((name, entry(name)))
        except BackendError as exc:
            out.append((name, str(exc)))
    return tuple(out)


def parse_options(name: str, values: Mapping[str, Any]) -> BackendOptions:
    """``values`` validated against backend ``name``'s options class (strings are converted)."""
    return opts.parse(entry(name).options, values, backend=name)


def build(name: str, options: Mapping[str, Any] | None = None, *,
          context: Mapping[str, Any] | None = None) -> DeviceBackend:
    """Backend ``name`` built from ``options`` (a typo or a wrong type is a BackendError naming it).

    ``context`` holds what the caller knows for every backend (the node name, the sim state
    directory, a per-call timeout); each key is used only by a backend whose options declare it,
    so one exporter config serves every backend. ``options`` wins over ``context``.
    """
    found = entry(name)
    known = opts.names(found.options)
    merged = {k: v for k, v in (context or {}).items() if k in known and v is not None}
    merged.update(options or {})
    return found.factory(**opts.as_kwargs(opts.parse(found.options, merged, backend=name)))


def create(name: str, **options: Any) -> DeviceBackend:
    """``build(name, options)``: every option must be one the backend declares."""
    return build(name, options)

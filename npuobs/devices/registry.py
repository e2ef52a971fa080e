"""The registry of device backends: one place that knows every backend by name.

Backends register a factory with ``@register("name")``; the CLI and the exporter build them by
name (``--backend sim``) without importing vendor modules they do not need. Modules listed in
``_BACKEND_MODULES`` are imported lazily so a missing optional library (e.g. NVML bindings) only
matters to the backend that needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from npuobs.devices.base import BackendError, DeviceBackend

BackendFactory = Callable[..., DeviceBackend]

_FACTORIES: dict[str, BackendFactory] = {}

# backend name -> module that registers it (imported on first use)
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


def register(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Class/function decorator adding a backend factory under ``name``."""

    def decorate(factory: BackendFactory) -> BackendFactory:
        _FACTORIES[name] = factory
        return factory

    return decorate


def add_backend_module(name: str, module: str) -> None:
    """Declare where a backend lives so ``create(name)`` can import it lazily."""
    _BACKEND_MODULES[name] = module


def names() -> tuple[str, ...]:
    """Every backend name that can be requested."""
    return tuple(sorted(set(_BACKEND_MODULES) | set(_FACTORIES)))


def factory(name: str) -> BackendFactory:
    """The factory registered as ``name`` (its module imported on first use); raises BackendError
    naming the valid choices."""
    if name not in _FACTORIES and name in _BACKEND_MODULES:
        try:
            importlib.import_module(_BACKEND_MODULES[name])
        except ImportError as exc:
            raise BackendError(f"backend {name!r} is unavailable: {exc}") from exc
    found = _FACTORIES.get(name)
    if found is None:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(names())}")
    return found


def create(name: str, **options: Any) -> DeviceBackend:
    """Build backend ``name`` with ``options``; raises BackendError naming the valid choices."""
    return factory(name)(**options)

"""Backends that read several sub-commands (``hl-smi -Q`` and ``hl-smi``, ``furiosa-smi info`` and
``status``): one failing source must cost its own fields, not every reading the others produced.

``read_sources`` runs each source, keeps what succeeded and the one-line error of what did not;
the backend returns the partial snapshot with the errors in ``Snapshot.errors`` (source name
-> message), which ``npuobs devices --json`` lists under ``errors`` and the exporter reports as the
collector's failed part. Only when every source fails is the sample itself a ``BackendError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from npuobs.devices.base import BackendError

T = TypeVar("T")


def read_sources(sources: Mapping[str, Callable[[], T]]) -> tuple[dict[str, T], dict[str, str]]:
    """Each source's result by name, and the error of each source that raised ``BackendError``.

    Raises ``BackendError`` listing every source's message when none succeeded.
    """
    results: dict[str, T] = {}
    errors: dict[str, str] = {}
    for name, read in sources.items():
        try:
            results[name] = read()
        except BackendError as exc:
            errors[name] = str(exc)
    if not results:
        raise BackendError("; ".join(f"{name}: {message}" for name, message in errors.items()))
    return results, errors

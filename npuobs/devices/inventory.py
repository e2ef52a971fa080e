"""The ``npuobs devices --json`` document: one JSON object per device, usable as a fleet inventory.

Readings are frozen dataclasses holding read-only mappings, which ``dataclasses.asdict`` cannot
copy (``cannot pickle 'mappingproxy'``); this module writes the document field by field instead,
so its shape is chosen here, documented in ``inventory.schema.json`` (shipped in the package, see
docs/backends.md) and checked against that schema by the tests for every backend's fixtures.

Shape (``schema_version`` 1):

* ``devices``: one object per device: identity (``node``, ``device``, ``vendor``, ``model``,
  ``uuid``, ``parent`` for a MIG/partition child), ``versions`` (driver/firmware/runtime, only
  those the source reports), ``up``/``healthy``, ``readings`` in base units (a key is **absent**
  when the source cannot tell, never a fake 0), the counter maps and ``errors`` naming what failed
  for that device;
* ``errors``: failures that belong to no single device: a backend that could not be read at all,
  or one sub-command of a backend (``hl-smi -Q``) while the others still produced readings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any

from npuobs.devices.base import DeviceReading

SCHEMA_VERSION = 1
SCHEMA_RESOURCE = "inventory.schema.json"

# DeviceReading fields that are plain numbers in base units, in the order the document lists them.
READING_FIELDS: tuple[str, ...] = (
    "temperature_celsius", "temperature_throttle_threshold_celsius", "power_watts", "power_limit_watts",
    "energy_joules_total", "utilization_ratio", "memory_used_bytes", "memory_total_bytes", "clock_hertz",
    "clock_max_hertz", "oom_events_total",
)
_VERSIONS = (("driver", "driver_version"), ("firmware", "firmware_version"), ("runtime", "runtime_version"))


@dataclass(frozen=True)
class SourceError:
    """A failure reported by one node's backend: ``source`` is a device id, a child backend of
    ``auto`` or a sub-command (``hl-smi -Q``); ``message`` is the backend's one line."""

    node: str
    source: str
    message: str


def device_object(node: str, backend: str, reading: DeviceReading, errors: Sequence[str] = ()) -> dict[str, Any]:
    """One device as a JSON-ready dict (see the module docstring for the shape)."""
    info = reading.info
    obj: dict[str, Any] = {
        "node": node, "backend": backend, "device": info.device, "vendor": info.vendor, "model": info.model,
    }
    if info.uuid:
        obj["uuid"] = info.uuid
    if info.parent:
        obj["parent"] = info.parent
    obj["versions"] = {key: getattr(info, attr) for key, attr in _VERSIONS if getattr(info, attr)}
    obj["up"] = reading.up
    obj["healthy"] = reading.healthy
    obj["readings"] = {name: getattr(reading, name) for name in READING_FIELDS if getattr(reading, name) is not None}
    if reading.throttled is not None:
        obj["readings"]["throttled"] = reading.throttled
    obj["throttle_reasons"] = dict(reading.throttle_reasons)
    obj["resets_total"] = dict(reading.resets_total)
    obj["errors_total"] = dict(reading.errors_total)
    obj["ops"] = [{"op": op, "placement": placement, "count": s.count, "seconds": s.seconds}
                  for (op, placement), s in sorted(reading.ops.items())]
    obj["errors"] = list(errors)
    return obj


def document(backend: str, readings: Iterable[tuple[str, str, DeviceReading]],
             errors: Iterable[SourceError] = (), taken_at: float | None = None) -> dict[str, Any]:
    """The whole inventory: ``readings`` as (node, backend that read it, reading).

    An error whose ``source`` is the id of a device on the same node is attached to that device;
    the rest are listed at the top level.
    """
    rows = list(readings)
    ids = {(node, r.info.device) for node, _, r in rows}
    per_device: dict[tuple[str, str], list[str]] = {}
    loose = []
    for err in errors:
        if (err.node, err.source) in ids:
            per_device.setdefault((err.node, err.source), []).append(err.message)
        else:
            loose.append({"node": err.node, "source": err.source, "message": err.message})
    when = datetime.now(timezone.utc) if taken_at is None else datetime.fromtimestamp(taken_at, timezone.utc)
    return {
        "schema_version": SCHEMA_VERSION,
        "backend": backend,
        "taken_at": when.isoformat().replace("+00:00", "Z"),
        "devices": [device_object(node, b, r, per_device.get((node, r.info.device), ())) for node, b, r in rows],
        "errors": loose,
    }


def schema() -> Mapping[str, Any]:
    """The JSON Schema (draft 2020-12) the document follows, as shipped in the package."""
    text = resources.files("npuobs.devices").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    return json.loads(text)

"""Rebellions ATOM (RBLN-CA*) through ``rbln-stat``, or through rbln-metrics-exporter's ``/metrics``.

``rbln-stat --json`` is the default source. Its quirks, all seen in a real 8-card capture: every
measurement is a string (``"29C"``, ``"18109794uW"`` in microwatts, memory as a byte count in a
string, ``"util": "0.0"`` in percent), and ``npu`` is an index inside an RSD group, so it repeats
across cards and cannot be the device id. The id is the index of the device node name
(``rbln3`` -> ``"3"``, as ``/dev/rbln3``), falling back to the PCI bus id, then the UUID, if a
future version stops printing unique names. ``stat_format="table"`` reads the plain ``rbln-stat``
table instead, for versions without ``--json``.

Not available from these sources, so always absent: power limit, throttle threshold and
reasons, clocks, energy, error counters. ``healthy`` comes from the JSON ``status`` (``normal``)
or the exporter's ``HEALTH`` gauge (the driver's error status, 0 = no error); the table has none.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from npuobs.devices import units
from npuobs.devices.autodetect import Detection
from npuobs.devices.base import BackendError, DeviceInfo, DeviceReading, ReadingsBackend
from npuobs.devices.options import ToolOptions
from npuobs.devices.registry import register
from npuobs.devices.toolrun import fetch_url, resolve_tool, run_tool

VENDOR = "rebellions"

DETECTION = Detection(device_globs=("/dev/rbln[0-9]*",), tools=("rbln-stat", "rbln-smi"))

_RBLN = re.compile(r"^rbln(\d+)$")
_KMD = re.compile(r"KMD ver:\s*(\S+)")


def detect() -> bool:
    """True when this host shows ``/dev/rblnN`` device nodes or the ``rbln-stat`` tool."""
    return DETECTION.present()


def assign_ids(readings: Sequence[DeviceReading], keys: Sequence[Mapping[str, str]], what: str
               ) -> tuple[DeviceReading, ...]:
    """Give each reading a unique, stable id: the ``rblnN`` index, else bus id, else UUID.

    ``keys`` holds, per reading, the candidate identifiers (``name``, ``bus_id``, ``uuid``). The
    first kind that is present and unique for every device wins, for all devices alike, so ids
    never mix schemes within one host.
    """
    candidates: tuple[tuple[str, Callable[[str], str | None]], ...] = (
        ("name", lambda v: m.group(1) if (m := _RBLN.match(v)) else None),
        ("bus_id", lambda v: v),
        ("uuid", lambda v: v),
    )
    for kind, to_id in candidates:
        ids = [to_id(k[kind]) if k.get(kind) else None for k in keys]
        if all(ids) and len(set(ids)) == len(ids):
            return tuple(
                dataclasses.replace(r, info=dataclasses.replace(r.info, device=i))
                for r, i in zip(readings, ids, strict=True)
            )
    raise BackendError(f"{what}: cannot tell the devices apart (no unique rblnN name, bus id or UUID)")


def _string(obj: Mapping[str, Any], key: str, what: str) -> str | None:
    """A field rbln-stat writes as a string; numbers are accepted, other types are an error."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise BackendError(f"{what}: {key!r} is a {type(value).__name__}, expected a string")


def _object(obj: Mapping[str, Any], key: str, what: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BackendError(f"{what}: {key!r} is a {type(value).__name__}, expected an object")
    return value


def parse_stat_json(text: str) -> tuple[DeviceReading, ...]:
    """``rbln-stat --json``: one reading per entry of ``devices``."""
    what = "rbln-stat --json"
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, or an int beyond 4300 digits
        raise BackendError(f"{what}: not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
        raise BackendError(f"{what}: expected an object with a 'devices' list")
    driver = _string(doc, "KMD_version", what) or ""
    readings, keys = [], []
    for n, dev in enumerate(doc["devices"]):
        where = f"{what}, devices[{n}]"
        if not isinstance(dev, dict):
            raise BackendError(f"{where}: expected an object, got {type(dev).__name__}")
        try:
            memory = _object(dev, "memory", where)
            status = _string(dev, "status", where)
            readings.append(DeviceReading(
                info=DeviceInfo(
                    device=str(n), vendor=VENDOR, model=_string(dev, "name", where) or "",
                    uuid=_string(dev, "uuid", where) or "", driver_version=driver,
                    firmware_version=_string(dev, "fw_ver", where) or "",
                ),
                up=True,
                healthy=None if status is None or units.is_absent(status) else status.lower() == "normal",
                temperature_celsius=units.to_celsius(_string(dev, "temperature", where)),
                power_watts=units.to_watts(_string(dev, "card_power", where)),
                utilization_ratio=units.to_ratio(_string(dev, "util", where)),
                memory_used_bytes=units.to_bytes(_string(memory, "used", where)),
                memory_total_bytes=units.to_bytes(_string(memory, "total", where)),
            ))
            keys.append({"name": _string(dev, "device", where) or "",
                         "bus_id": _string(_object(dev, "pci", where), "bus_id", where) or "",
                         "uuid": _string(dev, "uuid", where) or ""})
        except BackendError as exc:
            raise BackendError(f"{where}: {exc}") from exc
    if not readings:
        raise BackendError(f"{what}: no devices")
    return assign_ids(readings, keys, what)


TABLE_COLUMNS = ("NPU", "Name", "Device", "PCI BUS ID", "Temp", "Power", "Memory(used/total)", "Util")


def parse_stat_table(text: str) -> tuple[DeviceReading, ...]:
    """The plain ``rbln-stat`` table (Device Information); the Context table is not read."""
    what = "rbln-stat"
    kmd = _KMD.search(text)
    readings, keys = [], []
    for record in units.parse_box_table(text, ("NPU", "Device"), what, key="NPU", known=TABLE_COLUMNS):
        def cell(column: str, rec: dict[str, list[str]] = record) -> str | None:
            return " ".join(rec[column]) if rec.get(column) else None

        name = cell("Device") or ""
        try:
            memory = cell("Memory(used/total)")
            used, total = memory.split("/", 1) if memory and "/" in memory else (None, memory)
            readings.append(DeviceReading(
                info=DeviceInfo(device=name, vendor=VENDOR, model=cell("Name") or "",
                                driver_version=kmd.group(1) if kmd else ""),
                up=True,
                temperature_celsius=units.to_celsius(cell("Temp")),
                power_watts=units.to_watts(cell("Power")),
                utilization_ratio=units.to_ratio(cell("Util")),
                memory_used_bytes=units.to_bytes(used),
                memory_total_bytes=units.to_bytes(total),
            ))
        except BackendError as exc:
            raise BackendError(f"{what}, {name or 'a device'}: {exc}") from exc
        keys.append({"name": name, "bus_id": cell("PCI BUS ID") or ""})
    if not readings:
        raise BackendError(f"{what}: the Device Information table lists no device")
    return assign_ids(readings, keys, what)


def parse_exporter_metrics(text: str) -> tuple[DeviceReading, ...]:
    """rbln-metrics-exporter's ``RBLN_DEVICE_STATUS:*`` gauges, one reading per ``name`` (rblnN).

    DRAM gauges were GiB in early exporter versions (the published sample: ``15.71875``) and are
    bytes since; no card has less than 1 MiB or more than 1 PiB, so a ``DRAM_TOTAL`` below 2**20
    means GiB for the whole exposition. Without any total, fractional ``DRAM_USED`` values mean GiB.
    """
    what = "rbln-metrics-exporter"
    devices: dict[str, dict[str, Any]] = {}
    for s in units.prometheus_samples(text, what):
        if not s.name.startswith("RBLN_DEVICE_STATUS:"):
            continue
        name = s.labels.get("name")
        if not name:
            raise BackendError(f"{what}: {s.name} sample without a name label")
        dev = devices.setdefault(name, {"labels": s.labels, "values": {}})
        value = float(s.value)
        dev["values"].setdefault(s.name.split(":", 1)[1], value if math.isfinite(value) else None)
    if not devices:
        raise BackendError(f"{what}: no RBLN_DEVICE_STATUS:* samples")

    def present(key: str) -> list[float]:
        return [d["values"][key] for d in devices.values() if d["values"].get(key) is not None]

    totals, useds = present("DRAM_TOTAL"), present("DRAM_USED")
    in_gib = any(t < 1 << 20 for t in totals) if totals else any(u != int(u) for u in useds)
    unit = "GiB" if in_gib else "B"

    readings, keys = [], []
    for name, dev in devices.items():
        labels, values = dev["labels"], dev["values"]
        health, util = values.get("HEALTH"), values.get("UTILIZATION")
        used, total = values.get("DRAM_USED"), values.get("DRAM_TOTAL")
        try:
            memory_used, memory_total = units.to_bytes(used, unit), units.to_bytes(total, unit)
        except BackendError as exc:
            raise BackendError(f"{what}, {name}: {exc}") from exc
        readings.append(DeviceReading(
            info=DeviceInfo(device=name, vendor=VENDOR, model=labels.get("card", ""),
                            uuid=labels.get("uuid", ""), driver_version=labels.get("driver_version", ""),
                            firmware_version=labels.get("firmware_version", "")),
            up=True,
            healthy=None if health is None else health == 0.0,
            temperature_celsius=values.get("TEMPERATURE"),
            power_watts=values.get("CARD_POWER"),
            utilization_ratio=None if util is None else util / 100.0,
            memory_used_bytes=memory_used,
            memory_total_bytes=memory_total,
        ))
        keys.append({"name": name, "uuid": labels.get("uuid", "")})
    return assign_ids(readings, keys, what)


@dataclass(frozen=True)
class RebellionsOptions(ToolOptions):
    metrics_url: str | None = None  # read the vendor exporter's /metrics instead of running rbln-stat
    stat_format: str = "json"  # "json" or "table" (older rbln-stat without --json)


@register("rebellions", options=RebellionsOptions, detection=DETECTION)
class RebellionsBackend(ReadingsBackend):
    """ATOM devices via ``rbln-stat`` (JSON by default) or the vendor exporter at ``metrics_url``."""

    name = "rebellions"

    def __init__(self, *, node: str = "", tool_path: str | None = None, timeout: float = 5.0,
                 metrics_url: str | None = None, stat_format: str = "json") -> None:
        if stat_format not in ("json", "table"):
            raise BackendError(f"rebellions: stat_format must be 'json' or 'table', not {stat_format!r}")
        self._tool_path = tool_path
        self._tool: str | None = None
        self._timeout = timeout
        self._metrics_url = metrics_url
        self._stat_format = stat_format

    def _read(self) -> tuple[DeviceReading, ...]:
        if self._metrics_url:
            return parse_exporter_metrics(fetch_url(self._metrics_url, timeout=self._timeout))
        if self._tool is None:
            self._tool = resolve_tool(self._tool_path or "rbln-stat")
        if self._stat_format == "json":
            return parse_stat_json(run_tool([self._tool, "--json"], timeout=self._timeout))
        return parse_stat_table(run_tool([self._tool], timeout=self._timeout))


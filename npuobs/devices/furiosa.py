"""FuriosaAI RNGD through ``furiosa-smi``, or through furiosa-metrics-exporter's ``/metrics``.

``furiosa-smi`` has no machine-readable output in the versions documented with samples, so the
backend reads its tables: ``info --format full`` (temperature, power, core clock, firmware, PERT
runtime version, UUID) and ``status`` (liveness, memory, per-core utilization) and merges them by
device. Columns are read by header name and only ``Device`` is required, so the 2024.1 tables
(no Liveness/Memory, ``Core N: 0.00%,`` cells) and later ones (``Index``, ``PERT``) all parse; if
one of the two commands fails, the other's readings are still returned and the failure is
listed in ``last_errors``. When the vendor
exporter already runs on the node (its DaemonSet), ``metrics_url`` reads that instead and no tool
is needed in our container.

Not available from either source, so always absent: power limit, throttle threshold and reasons,
energy, error counters. The device id is the index of ``npuN`` ("0"), the same number
``/dev/rngd/npuN`` and the vendor's tools use.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import fmean
from typing import Any

from npuobs.devices import units
from npuobs.devices.autodetect import Detection
from npuobs.devices.base import BackendError, DeviceInfo, DeviceReading, ReadingsBackend
from npuobs.devices.options import ToolOptions
from npuobs.devices.partial import read_sources
from npuobs.devices.registry import register
from npuobs.devices.toolrun import fetch_url, resolve_tool, run_tool

VENDOR = "furiosa"

DETECTION = Detection(device_globs=("/dev/rngd*",), tools=("furiosa-smi",))

_NPU = re.compile(r"^npu(\d+)$")
_CORE_UTIL = re.compile(r"^Core\s+\d+:\s*(?P<value>\S+)$")
# Columns the parsers read; any other column (``Index``, ``S/N``, ``PCI-DEV``, ``Governor`` ...) is
# ignored and logged once at debug level.
INFO_COLUMNS = ("Index", "Arch", "Device", "UUID", "Firmware", "PERT", "Temp.", "Power", "Core Clock", "Clock",
                "PCI-BDF")
STATUS_COLUMNS = ("Arch", "Device", "Liveness", "Memory", "Cores", "Core Utilization")
INFO_SOURCE = "furiosa-smi info"  # the names failures are reported under (``last_errors``)
STATUS_SOURCE = "furiosa-smi status"


def detect() -> bool:
    """True when this host shows RNGD device nodes or ``furiosa-smi``."""
    return DETECTION.present()


def device_id(name: str) -> str:
    """``"npu3"`` -> ``"3"``; a name of another shape is kept whole rather than guessed at."""
    m = _NPU.match(name)
    return m.group(1) if m else name


def _cell(record: dict[str, list[str]], column: str) -> str | None:
    """The column's text, or None when the row has none or the tool version has no such column."""
    fragments = record.get(column)
    return " ".join(fragments) if fragments else None


def _value(record: dict[str, list[str]], *columns: str) -> str | None:
    """The first of ``columns`` that holds a value (tool versions renamed ``Clock`` to ``Core
    Clock``); ``...`` (a value elided in published output) counts as no value."""
    for column in columns:
        text = _cell(record, column)
        if text is not None and text.strip() != "...":
            return text
    return None


def _required(record: dict[str, list[str]], column: str, what: str) -> str:
    value = _cell(record, column)
    if value is None or units.is_absent(value):
        raise BackendError(f"{what}: a row has no {column}")
    return value


def parse_info(text: str) -> tuple[DeviceReading, ...]:
    """``furiosa-smi info`` and ``info --format full`` (which adds UUID and core clock).

    Only ``Device`` is required; every other column is read by name when the version prints it
    (2024.2 added ``PERT``, the runtime version; ``Clock`` became ``Core Clock``).
    """
    what = "furiosa-smi info"
    readings = []
    for record in units.parse_box_table(text, ("Device",), what, key="Device", known=INFO_COLUMNS):
        name = _required(record, "Device", what)
        try:
            readings.append(DeviceReading(
                info=DeviceInfo(
                    device=device_id(name), vendor=VENDOR, model=(_cell(record, "Arch") or "").upper(),
                    uuid=_cell(record, "UUID") or "", firmware_version=_cell(record, "Firmware") or "",
                    runtime_version=_cell(record, "PERT") or "",
                ),
                up=True,
                temperature_celsius=units.to_celsius(_value(record, "Temp.")),
                power_watts=units.to_watts(_value(record, "Power")),
                clock_hertz=units.to_hertz(_value(record, "Core Clock", "Clock")),
            ))
        except BackendError as exc:
            raise BackendError(f"{what}, {name}: {exc}") from exc
    if not readings:
        raise BackendError(f"{what}: the table lists no device")
    return units.check_unique(readings, what)


def _memory(text: str | None) -> tuple[int | None, int | None]:
    """``"0.00/47.50 GiB (0.00%)"`` -> (used, total) bytes; the unit is written once, at the end."""
    if text is None:
        return None, None
    amounts = text.split("(")[0]
    if "/" not in amounts:
        raise BackendError(f"memory {text!r} is not used/total")
    used, total = (part.strip() for part in amounts.split("/", 1))
    total_q = units.split_quantity(total)
    unit = total_q[1] if total_q and total_q[1] else "B"
    return units.to_bytes(used, unit), units.to_bytes(total)


def _core_utilization(fragments: Iterable[str]) -> float | None:
    """Mean busy ratio of the cores that report one; ``Core N: -`` (idle, no value) is skipped."""
    values = []
    for fragment in fragments:
        m = _CORE_UTIL.match(units.trim_cell(fragment))
        if m is None:
            raise BackendError(f"core utilization {fragment!r} is not 'Core N: value'")
        ratio = units.to_ratio(m.group("value"))
        if ratio is not None:
            values.append(ratio)
    return fmean(values) if values else None


def parse_status(text: str) -> tuple[DeviceReading, ...]:
    """``furiosa-smi status``: liveness, memory and per-core utilization (multi-line cells).

    Versions before 2024.2 print neither ``Liveness`` nor ``Memory`` (only ``Cores`` and
    ``Core Utilization``, cells ending in ``,``): the device is then listed as up (the tool sees
    it) with health and memory absent.
    """
    what = "furiosa-smi status"
    readings = []
    for record in units.parse_box_table(text, ("Device", "Core Utilization"), what, known=STATUS_COLUMNS):
        name = _required(record, "Device", what)
        try:
            liveness = _cell(record, "Liveness")
            alive = None if liveness is None or units.is_absent(liveness) else liveness.lower() == "alive"
            used, total = _memory(_cell(record, "Memory"))
            readings.append(DeviceReading(
                info=DeviceInfo(device_id(name), VENDOR, (_cell(record, "Arch") or "").upper()),
                up=alive is not False,
                healthy=alive,
                memory_used_bytes=used,
                memory_total_bytes=total,
                utilization_ratio=_core_utilization(record.get("Core Utilization", ())),
            ))
        except BackendError as exc:
            raise BackendError(f"{what}, {name}: {exc}") from exc
    if not readings:
        raise BackendError(f"{what}: the table lists no device")
    return units.check_unique(readings, what)


def _merge_two(a: DeviceReading, b: DeviceReading) -> DeviceReading:
    """One device seen by two commands: a value either knows wins over "unknown"."""
    info = dataclasses.replace(a.info, **{
        f.name: getattr(b.info, f.name) for f in dataclasses.fields(DeviceInfo)
        if not getattr(a.info, f.name) and getattr(b.info, f.name)
    })
    changes: dict[str, Any] = {"info": info, "up": a.up and b.up}
    for f in dataclasses.fields(DeviceReading):
        if f.name not in changes and getattr(a, f.name) in (None, {}):
            changes[f.name] = getattr(b, f.name)
    if a.healthy is not None and b.healthy is not None:
        changes["healthy"] = a.healthy and b.healthy
    return dataclasses.replace(a, **changes)


def merge_readings(*groups: Iterable[DeviceReading]) -> tuple[DeviceReading, ...]:
    """Readings of the same devices from several commands, combined per device id."""
    merged: dict[str, DeviceReading] = {}
    for group in groups:
        for reading in group:
            key = reading.info.device
            merged[key] = _merge_two(merged[key], reading) if key in merged else reading
    return tuple(merged.values())


def _finite(value: float) -> float | None:
    """Sample values as floats (the parser yields ints for "50"); NaN/Inf mean "no value"."""
    value = float(value)
    return value if math.isfinite(value) else None


def parse_exporter_metrics(text: str) -> tuple[DeviceReading, ...]:
    """furiosa-metrics-exporter's exposition (``furiosa_npu_*``), one reading per ``device``.

    Device-wise series repeat once per pod partition (``core="0-3"``), so the first sample of each
    (metric, device, label) is used; per-core series are averaged over distinct cores. The die
    temperature is the ``peak`` sensor (``ambient`` is the board's), power the ``rms`` one.
    """
    what = "furiosa-metrics-exporter"
    per_device: dict[str, dict[str, Any]] = {}
    for s in units.prometheus_samples(text, what):
        if not s.name.startswith("furiosa_npu_"):
            continue
        name = s.labels.get("device")
        if not name:
            raise BackendError(f"{what}: {s.name} sample without a device label")
        dev = per_device.setdefault(name, {"labels": s.labels, "first": {}, "cores": {}})
        value = _finite(s.value)
        if s.name in ("furiosa_npu_core_utilization", "furiosa_npu_core_frequency"):
            dev["cores"].setdefault((s.name, s.labels.get("core", "")), value)
        else:
            dev["first"].setdefault((s.name, s.labels.get("label", "")), value)
    if not per_device:
        raise BackendError(f"{what}: no furiosa_npu_* samples")

    readings = []
    for name, dev in per_device.items():
        labels, first = dev["labels"], dev["first"]

        def core_mean(metric: str, cores: dict = dev["cores"]) -> float | None:
            values = [v for (m, _), v in cores.items() if m == metric and v is not None]
            return fmean(values) if values else None

        alive = first.get(("furiosa_npu_alive", ""))
        util = core_mean("furiosa_npu_core_utilization")
        freq = core_mean("furiosa_npu_core_frequency")
        try:
            used = units.to_bytes(first.get(("furiosa_npu_dram_usage", "")))
            total = units.to_bytes(first.get(("furiosa_npu_dram_total", "")))
        except BackendError as exc:
            raise BackendError(f"{what}, {name}: {exc}") from exc
        readings.append(DeviceReading(
            info=DeviceInfo(
                device=device_id(name), vendor=VENDOR, model=labels.get("arch", "").upper(),
                uuid=labels.get("uuid", ""), driver_version=labels.get("driver_version", ""),
                firmware_version=labels.get("firmware_version", ""),
                runtime_version=labels.get("pert_version", ""),
            ),
            # a device the exporter lists but whose liveness it did not report is taken as up
            up=alive != 0.0,
            healthy=None if alive is None else alive == 1.0,
            temperature_celsius=first.get(("furiosa_npu_hw_temperature", "peak")),
            power_watts=first.get(("furiosa_npu_hw_power", "rms")),
            utilization_ratio=None if util is None else util / 100.0,
            clock_hertz=None if freq is None else freq * 1e6,
            memory_used_bytes=used,
            memory_total_bytes=total,
        ))
    return units.check_unique(readings, what)


@dataclass(frozen=True)
class FuriosaOptions(ToolOptions):
    metrics_url: str | None = None  # read the vendor exporter's /metrics instead of running furiosa-smi


@register("furiosa", options=FuriosaOptions, detection=DETECTION)
class FuriosaBackend(ReadingsBackend):
    """RNGD devices via ``furiosa-smi`` (default) or the vendor exporter at ``metrics_url``."""

    name = "furiosa"

    def __init__(self, *, node: str = "", tool_path: str | None = None, timeout: float = 5.0,
                 metrics_url: str | None = None) -> None:
        self._tool_path = tool_path
        self._tool: str | None = None
        self._timeout = timeout
        self._metrics_url = metrics_url
        self.last_errors: dict[str, str] = {}  # sub-command -> message, for a partial sample

    def _read(self) -> tuple[DeviceReading, ...]:
        if self._metrics_url:
            return parse_exporter_metrics(fetch_url(self._metrics_url, timeout=self._timeout))
        if self._tool is None:
            self._tool = resolve_tool(self._tool_path or "furiosa-smi")
        tool = self._tool
        got, self.last_errors = read_sources({
            INFO_SOURCE: lambda: parse_info(run_tool([tool, "info", "--format", "full"], timeout=self._timeout)),
            STATUS_SOURCE: lambda: parse_status(run_tool([tool, "status"], timeout=self._timeout)),
        })
        return merge_readings(*got.values())

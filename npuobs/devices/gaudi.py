"""Intel Gaudi backend: ``hl-smi``, in its CSV query form and its default table.

Two forms, because neither alone has every field:

* ``hl-smi -Q <fields> -f csv,noheader,nounits`` is the machine-readable form (stable column order
  that we choose, no layout to guess). Its documented field list (``hl-smi -h``, Habana's "System
  Management Interface Tool" page) has temperature, power draw, memory, utilization, SoC clocks,
  ECC counters, uuid and driver version, but **no power limit and no firmware version**.
* The default table (``hl-smi``) prints ``Pwr:Usage/Cap`` (the power limit) and the
  ``HL-SMI Version: hl-<software>-fw-<firmware>`` banner, plus the "Volatile Uncor-Events" column
  (``Volatile Uncorr. ECC`` before 1.21): uncorrectable events since the driver loaded.

``sample()`` therefore runs the CSV query and then the table, and fills what the query lacks from
the table (matched by AIP index). Either one may fail alone (``npuobs.devices.partial``): without
the table the query's readings come back without power limit and versions; without the query
(``hl-smi -Q`` failing, or an hl-smi that lacks a field) the table's readings come back without
clocks, uuid and corrected ECC. The failed command is named in ``last_errors``.

Versions: ``Driver Version`` -> ``driver_version``; the ``fw-`` part of the HL-SMI version ->
``firmware_version``; the ``hl-`` part (the Intel Gaudi software release hl-smi ships with) ->
``runtime_version``, so a node whose user-space release differs from its driver (hl-1.21.0 tools on
a 1.20.1 driver) shows up as a version mismatch. Units: hl-smi writes MiB for memory, °C, W, MHz
and %; ``nounits`` drops them and the parser assumes exactly those.

Not reported by hl-smi, hence absent: energy, throttle state/reasons, resets, the temperature
throttle threshold, OOM events.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from npuobs.devices import units
from npuobs.devices.autodetect import Detection
from npuobs.devices.base import BackendError, DeviceInfo, DeviceReading, ToolBackend
from npuobs.devices.options import ToolOptions
from npuobs.devices.partial import read_sources
from npuobs.devices.registry import register
from npuobs.devices.toolrun import resolve_tool, run_tool

TOOL = "hl-smi"
QUERY_SOURCE = "hl-smi -Q"  # the names failures are reported under (``last_errors``)
TABLE_SOURCE = "hl-smi"
VENDOR = "intel"
log = logging.getLogger(__name__)
_N = TypeVar("_N", int, float)

# The fields ``sample()`` asks for, all from the documented ``--query-aip`` list. Order matters:
# with ``noheader`` the CSV columns are exactly these.
QUERY_FIELDS: tuple[str, ...] = (
    "index", "uuid", "name", "bus_id", "driver_version",
    "temperature.aip", "power.draw", "memory.used", "memory.total", "utilization.aip",
    "clocks.current.soc", "clocks.max.soc",
    "ecc.errors.corrected.volatile.total", "ecc.errors.uncorrected.volatile.total",
)

_VERSION = re.compile(r"HL-SMI Version:\s*(\S+)")
_DRIVER = re.compile(r"^\|?\s*Driver Version:\s*(\S+)", re.MULTILINE)
_HL_VERSION = re.compile(r"^hl-(?P<sw>[\w.]+?)-fw-(?P<fw>\S+)$")
_BUS_ID = re.compile(r"^[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")
_AIP = re.compile(r"^(?P<index>\d+)\s+(?P<name>\S+)")
# second line of a device: "N/A   35C   P0  525W /  600W"
_STATE = re.compile(r"^(?P<fan>\S+)\s+(?P<temp>\S+)\s+(?P<perf>\S+)\s+(?P<draw>\S+)\s*/\s*(?P<cap>\S+)$")


def _fail(problem: str) -> BackendError:
    return BackendError(f"{TOOL}: {problem}")


def _value(convert: Callable[[str], float | None], text: str, what: str) -> float | None:
    """Run a ``units`` converter, naming the tool and field in any error."""
    try:
        return convert(text)
    except BackendError as exc:
        raise _fail(f"{what}: {exc}") from None


def _celsius(text: str, what: str) -> float | None:
    return _value(units.to_celsius, text, what)


def _watts(text: str, what: str) -> float | None:
    return _value(units.to_watts, text, what)


def _mhz(text: str, what: str) -> float | None:
    return _value(lambda t: units.to_hertz(t, "MHz"), text, what)


def _bytes(text: str, what: str) -> int | None:
    value = _value(lambda t: units.to_bytes(t, "MiB"), text, what)
    if value is not None and value < 0:
        raise _fail(f"{what}: negative memory size {text!r}")
    return None if value is None else int(value)


def _count(text: str, what: str) -> int | None:
    try:
        value = units.parse_int(text)
    except BackendError as exc:
        raise _fail(f"{what}: {exc}") from None
    if value is not None and value < 0:
        raise _fail(f"{what}: negative counter {text!r}")
    return value


def _ratio(text: str, what: str) -> float | None:
    value = _value(units.to_ratio, text, what)
    if value is not None and value < 0:
        raise _fail(f"{what}: negative utilization {text!r}")
    return value


def _cells(line: str) -> list[str] | None:
    s = line.strip()
    if len(s) < 2 or not s.startswith("|") or not s.endswith("|"):
        return None
    return [c.strip() for c in s[1:-1].split("|")]


def parse_table(text: str) -> tuple[DeviceReading, ...]:
    """Readings from the default ``hl-smi`` table (two table lines per AIP)."""
    if not isinstance(text, str):
        raise _fail(f"expected text output, got {type(text).__name__}")
    firmware = runtime = ""
    m = _VERSION.search(text)
    if m:
        hl = _HL_VERSION.match(m.group(1))
        if hl:
            runtime, firmware = hl.group("sw"), hl.group("fw")
    m = _DRIVER.search(text)
    driver = m.group(1) if m else ""
    has_ecc = "Uncor" in text  # "Volatile Uncor-Events" (1.21) / "Volatile Uncorr. ECC" (1.17)

    lines = text.splitlines()
    readings: list[DeviceReading] = []
    for i, line in enumerate(lines):
        first = _cells(line)
        if first is None or len(first) != 3 or not _BUS_ID.match(first[1].split()[0] if first[1] else ""):
            continue
        aip = _AIP.match(first[0])
        if aip is None:
            raise _fail(f"device line without an AIP index and name: {line.strip()!r}")
        what = f"AIP {aip.group('index')}"
        second = _cells(lines[i + 1]) if i + 1 < len(lines) else None
        if second is None or len(second) != 3:
            raise _fail(f"{what}: the line after the device line is not its state line")
        state = _STATE.match(second[0])
        mem = second[1].split("/")
        util = second[2].split()
        if state is None or len(mem) != 2 or not util:
            raise _fail(f"{what}: cannot parse state line {lines[i + 1].strip()!r}")
        errors = {}
        if has_ecc:
            uncorrected = _count(first[2], f"{what} uncorrectable events")
            if uncorrected is not None:
                errors["ecc_uncorrected"] = uncorrected
        readings.append(DeviceReading(
            info=DeviceInfo(device=aip.group("index"), vendor=VENDOR, model=aip.group("name"),
                            driver_version=driver, firmware_version=firmware, runtime_version=runtime),
            up=True,
            temperature_celsius=_celsius(state.group("temp"), f"{what} temperature"),
            power_watts=_watts(state.group("draw"), f"{what} power"),
            power_limit_watts=_watts(state.group("cap"), f"{what} power cap"),
            memory_used_bytes=_bytes(mem[0], f"{what} memory used"),
            memory_total_bytes=_bytes(mem[1], f"{what} memory total"),
            utilization_ratio=_ratio(util[0], f"{what} AIP-Util"),
            errors_total=errors,
        ))
    if not readings:
        raise _fail("no AIP rows in the table output")
    return units.check_unique(readings, TOOL)


def parse_query_csv(text: str, fields: Sequence[str] = QUERY_FIELDS) -> tuple[DeviceReading, ...]:
    """Readings from ``hl-smi -Q <fields> -f csv[,noheader][,nounits]``.

    ``fields`` is the list that was queried (it must include ``index``). A header line, if the tool
    printed one, is recognised by its first cell and skipped; values may carry units (``35 C``,
    ``512 MiB``) or not (``nounits``: hl-smi's units, MiB/°C/W/MHz/%, are then assumed).
    """
    if not isinstance(text, str):
        raise _fail(f"expected CSV text, got {type(text).__name__}")
    if "index" not in fields:
        raise _fail("the CSV query must include the 'index' field")
    rows = [row for row in csv.reader(text.splitlines(), skipinitialspace=True)
            if any(c.strip() for c in row)]
    if rows and rows[0] and rows[0][0].strip().lower().startswith(fields[0].lower()):
        rows = rows[1:]
    if not rows:
        raise _fail("the CSV query returned no rows")
    readings = []
    for row in rows:
        if len(row) != len(fields):
            raise _fail(f"CSV row has {len(row)} fields, expected {len(fields)}: {','.join(row)!r}")
        v = {name: cell.strip() for name, cell in zip(fields, row, strict=True)}
        index = _count(v["index"], "index")
        if index is None:
            raise _fail(f"CSV row without an index: {','.join(row)!r}")
        what = f"AIP {index}"
        errors = {}
        for field, kind in (("ecc.errors.corrected.volatile.total", "ecc_corrected"),
                            ("ecc.errors.uncorrected.volatile.total", "ecc_uncorrected")):
            if field in v:
                count = _count(v[field], f"{what} {field}")
                if count is not None:
                    errors[kind] = count
        readings.append(DeviceReading(
            info=DeviceInfo(device=str(index), vendor=VENDOR, model=_text(v.get("name")),
                            uuid=_text(v.get("uuid")), driver_version=_text(v.get("driver_version"))),
            up=True,
            temperature_celsius=_field(v, "temperature.aip", _celsius, what),
            power_watts=_field(v, "power.draw", _watts, what),
            memory_used_bytes=_field(v, "memory.used", _bytes, what),
            memory_total_bytes=_field(v, "memory.total", _bytes, what),
            utilization_ratio=_field(v, "utilization.aip", _ratio, what),
            clock_hertz=_field(v, "clocks.current.soc", _mhz, what),
            clock_max_hertz=_field(v, "clocks.max.soc", _mhz, what),
            errors_total=errors,
        ))
    return units.check_unique(readings, TOOL)


def _text(value: str | None) -> str:
    return "" if value is None or units.is_absent(value) else value


def _field(v: dict[str, str], name: str, convert: Callable[[str, str], _N | None], what: str
           ) -> _N | None:
    """Field ``name`` of a CSV row converted with ``convert``; None when it was not queried."""
    return convert(v[name], f"{what} {name}") if name in v else None


def merge(query: Sequence[DeviceReading], table: Sequence[DeviceReading]) -> tuple[DeviceReading, ...]:
    """The query's readings, completed from the table's: power limit, firmware/runtime versions and
    any field the query left ``None``. Devices only the table lists are not added (the query is the
    authoritative inventory)."""
    by_id = {r.info.device: r for r in table}
    out = []
    for q in query:
        t = by_id.get(q.info.device)
        if t is None:
            out.append(q)
            continue
        info = replace(q.info, firmware_version=q.info.firmware_version or t.info.firmware_version,
                       runtime_version=q.info.runtime_version or t.info.runtime_version,
                       driver_version=q.info.driver_version or t.info.driver_version,
                       model=q.info.model or t.info.model)
        filled = {name: getattr(t, name) for name in (
            "temperature_celsius", "power_watts", "power_limit_watts", "memory_used_bytes",
            "memory_total_bytes", "utilization_ratio") if getattr(q, name) is None}
        out.append(replace(q, info=info, errors_total={**t.errors_total, **q.errors_total}, **filled))
    return tuple(out)


# The habanalabs driver creates /dev/hlN; newer kernels use /dev/accel/accelN instead, which other
# accelerators share, so there hl-smi (which this backend needs anyway) is the sign.
DETECTION = Detection(device_globs=("/dev/hl[0-9]*",), tools=(TOOL,))


def detect() -> bool:
    """A Gaudi host: ``/dev/hlN`` device nodes or ``hl-smi`` on PATH."""
    return DETECTION.present()


@register("gaudi", options=ToolOptions, detection=DETECTION)
class GaudiBackend(ToolBackend):
    """Runs ``hl-smi -Q ...`` (CSV) and ``hl-smi`` (table) on every sample; see the module doc."""

    name = "gaudi"

    def _read(self) -> tuple[DeviceReading, ...]:
        tool = resolve_tool(self._tool_path or TOOL)
        got, self.last_errors = read_sources({
            QUERY_SOURCE: lambda: parse_query_csv(run_tool(
                [tool, "-Q", ",".join(QUERY_FIELDS), "-f", "csv,noheader,nounits"], timeout=self.timeout)),
            TABLE_SOURCE: lambda: parse_table(run_tool([tool], timeout=self.timeout)),
        })
        for source, message in self.last_errors.items():
            log.warning("%s unavailable, its fields are omitted: %s", source, message)
        if QUERY_SOURCE not in got:
            return got[TABLE_SOURCE]
        return merge(got[QUERY_SOURCE], got.get(TABLE_SOURCE, ()))

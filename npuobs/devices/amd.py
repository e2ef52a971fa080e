"""AMD Instinct backend: the ``amdsmi`` Python library, or the ``amd-smi`` / ``rocm-smi`` CLIs.

Sources, in the order ``source="auto"`` tries them:

1. ``library``: the ``amdsmi`` Python bindings (shipped with ROCm, optional here and imported
   lazily). Preferred: no subprocess per sample, typed values, and it is what ``amd-smi`` itself
   calls. Calls a GPU does not support raise ``AmdSmiLibraryException``; that field is then absent.
2. ``amd-smi``: ``amd-smi metric --json`` for the live values, plus ``amd-smi static --json`` (read
   once and cached: model, driver and VBIOS versions do not change while the driver is loaded).
   Values follow the ``{"value": .., "unit": ..}`` convention (ROCm 6.1+); ROCm 6.3+ wraps the
   list in ``{"gpu_data": [...]}``. Both layouts are accepted.
3. ``rocm-smi``: ``rocm-smi --json`` for hosts with only the older tool. Every value is a string,
   units live in the key names (``"VRAM Total Memory (B)"``) and clocks in parentheses
   (``"(1402Mhz)"``); keys that are not metrics (topology weights, clock-level dumps ``"0"..``,
   process entries ``"PID123"``) are ignored.

``amd-smi monitor`` (a whitespace table, ``source="amd-smi-monitor"``) is parsed too: it is what
people paste into tickets and what some container images ship with, and it needs no JSON support.

Units. amd-smi prints memory as ``MB`` but computes it as ``bytes // (1024 * 1024)``
(amdsmi_cli/amdsmi_commands.py), so its ``MB`` is read as MiB; rocm-smi reports bytes. Power in W,
temperatures in °C (the *hotspot*/junction sensor, which is what throttles, falling back to edge),
clocks in MHz (graphics clock), activity in %.

Counters: ECC correctable/uncorrectable totals -> ``errors_total`` ``ecc_corrected`` /
``ecc_uncorrected``; the PCIe replay count (link-level retransmissions) -> ``pcie``. amd-smi's
energy accumulator -> ``energy_joules_total``. amd-smi's ``throttle_status`` -> ``throttled``
(no per-reason breakdown is mapped). Not reported, hence absent: throttle threshold temperature,
resets, OOM events.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from npuobs.devices import units
from npuobs.devices.autodetect import Detection
from npuobs.devices.base import BackendError, DeviceInfo, DeviceReading, ReadingsBackend
from npuobs.devices.options import ToolOptions
from npuobs.devices.registry import register
from npuobs.devices.toolrun import resolve_tool, run_tool

VENDOR = "amd"
SOURCES = ("auto", "library", "amd-smi", "amd-smi-monitor", "rocm-smi")
log = logging.getLogger(__name__)

# amd-smi's binary-by-convention sizes (see the module docstring).
_AMD_BYTES: Mapping[str, float] = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}
_JOULES: Mapping[str, float] = {"j": 1.0, "mj": 1e-3, "uj": 1e-6, "µj": 1e-6, "kj": 1e3}
_MIB = 1 << 20


def _fail(tool: str, problem: str) -> BackendError:
    return BackendError(f"{tool}: {problem}")


# --- value conversion shared by every source -------------------------------------------------

def _flatten(raw: object) -> str | float | None:
    """``{"value": 141, "unit": "W"}`` -> ``"141 W"``; scalars pass through, anything else is an
    error (the ``units`` converters then reject booleans and unparsable strings)."""
    if isinstance(raw, dict):
        value, unit = raw.get("value"), raw.get("unit", "")
        if value is None:
            return None
        if not isinstance(unit, str) or not isinstance(value, (str, int, float)):
            raise BackendError(f"malformed value object {raw!r}")
        return f"{value} {unit}".strip() if isinstance(value, str) or unit else value
    if raw is None or isinstance(raw, (str, int, float)):
        return raw
    raise BackendError(f"expected a scalar value, got {type(raw).__name__} {raw!r}")


def _watts(raw: object) -> float | None:
    return units.to_watts(_flatten(raw))


def _celsius(raw: object) -> float | None:
    return units.to_celsius(_flatten(raw))


def _mhz(raw: object) -> float | None:
    return units.to_hertz(_flatten(raw), "MHz")


def _percent(raw: object) -> float | None:
    value = units.to_ratio(_flatten(raw))
    if value is not None and value < 0:
        raise BackendError(f"negative percentage {raw!r}")
    return value


def _amd_mib(raw: object) -> int | None:
    value = units.convert(_flatten(raw), _AMD_BYTES, "MB", "memory size")
    return _nonneg_int(value, raw)


def _bytes(raw: object) -> int | None:
    return _nonneg_int(units.to_bytes(_flatten(raw)), raw)


def _joules(raw: object) -> float | None:
    value = units.convert(_flatten(raw), _JOULES, "J", "energy")
    if value is not None and value < 0:
        raise BackendError(f"negative energy {raw!r}")
    return value


def _count(raw: object) -> int | None:
    flat = _flatten(raw)
    if isinstance(flat, float) and not isinstance(flat, bool):
        if not math.isfinite(flat) or not flat.is_integer():
            raise BackendError(f"expected a whole count, got {raw!r}")
        flat = int(flat)
    value = units.parse_int(flat)
    return _nonneg_int(value, raw)


def _nonneg_int(value: float | None, raw: object) -> int | None:
    if value is None:
        return None
    if value < 0:
        raise BackendError(f"negative value {raw!r}")
    return round(value)


def _get(tool: str, what: str, convert: Callable[[object], Any], raw: object) -> Any:
    """``convert(raw)`` with the tool and field named in any error."""
    try:
        return convert(raw)
    except BackendError as exc:
        raise _fail(tool, f"{what}: {exc}") from None


def _first(obj: Mapping[str, Any], *keys: str) -> Any:
    """The first of ``keys`` present with a value in ``obj`` (field names moved between versions)."""
    for key in keys:
        value = obj.get(key)
        if value is not None and not (isinstance(value, str) and units.is_absent(value)):
            return value
    return None


def _section(tool: str, entry: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A sub-object of a GPU entry; ``{}`` when absent or ``"N/A"`` (amd-smi's "unsupported")."""
    value = entry.get(key)
    if value is None or isinstance(value, str):
        return {}
    if not isinstance(value, dict):
        raise _fail(tool, f"{key!r} is a {type(value).__name__}, expected an object")
    return value


def _load_json(tool: str, text: str) -> Any:
    if not isinstance(text, str):
        raise _fail(tool, f"expected JSON text, got {type(text).__name__}")
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        raise _fail(tool, "no JSON in the output")
    try:
        # Warnings ("WARNING: User is missing ... groups") may precede the document.
        return json.loads(text[start:])
    except (ValueError, RecursionError) as exc:
        raise _fail(tool, f"invalid JSON: {exc}") from None


def _gpu_entries(tool: str, doc: Any) -> list[Mapping[str, Any]]:
    """amd-smi's list of per-GPU objects, bare (ROCm <= 6.2) or as ``{"gpu_data": [...]}``."""
    if isinstance(doc, dict) and "gpu_data" in doc:
        doc = doc["gpu_data"]
    if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
        raise _fail(tool, "expected a list of GPU objects")
    if not doc:
        raise _fail(tool, "no GPUs in the output")
    return doc


def _gpu_id(tool: str, entry: Mapping[str, Any]) -> str:
    gpu = entry.get("gpu")
    if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
        raise _fail(tool, f"GPU entry without a valid 'gpu' index: {gpu!r}")
    return str(gpu)


# --- amd-smi metric / static --json -----------------------------------------------------------

def parse_static_json(text: str) -> dict[str, DeviceInfo]:
    """``amd-smi static --json`` -> device id -> identity (model, driver and VBIOS versions)."""
    tool = "amd-smi static"
    infos: dict[str, DeviceInfo] = {}
    for entry in _gpu_entries(tool, _load_json(tool, text)):
        device = _gpu_id(tool, entry)
        asic, driver = _section(tool, entry, "asic"), _section(tool, entry, "driver")
        vbios = _section(tool, entry, "vbios") or _section(tool, entry, "ifwi")  # renamed in 6.4
        infos[device] = DeviceInfo(
            device=device, vendor=VENDOR, model=_name(_first(asic, "market_name")),
            driver_version=_str(_first(driver, "version", "driver_version")),
            firmware_version=_str(_first(vbios, "version", "vbios_version")),
        )
    return infos


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _name(value: Any) -> str:
    """A model name, or "" when the tool gave a PCI id (``0x74a1``) where the name belongs."""
    text = _str(value)
    return "" if units.is_pci_id(text) else text


def parse_metric_json(text: str, static: Mapping[str, DeviceInfo] | None = None
                      ) -> tuple[DeviceReading, ...]:
    """``amd-smi metric --json`` (any subset of its sections) -> readings.

    ``static`` (from ``parse_static_json``) supplies model and versions, which ``metric`` lacks.
    """
    tool = "amd-smi metric"
    static = static or {}
    readings = []
    for entry in _gpu_entries(tool, _load_json(tool, text)):
        device = _gpu_id(tool, entry)
        what = f"GPU {device}"
        power, temp = _section(tool, entry, "power"), _section(tool, entry, "temperature")
        usage, mem = _section(tool, entry, "usage"), _section(tool, entry, "mem_usage")
        ecc, pcie = _section(tool, entry, "ecc"), _section(tool, entry, "pcie")
        energy, clock = _section(tool, entry, "energy"), _section(tool, entry, "clock")
        gfx = clock.get("gfx_0", clock.get("gfx"))
        gfx = gfx if isinstance(gfx, dict) else {}
        errors = _error_counts(tool, what, {
            "ecc_corrected": _first(ecc, "total_correctable", "total_correctable_count", "correctable"),
            "ecc_uncorrected": _first(ecc, "total_uncorrectable", "total_uncorrectable_count",
                                      "uncorrectable"),
            "pcie": _first(pcie, "replay_count"),
        })
        throttle = power.get("throttle_status")
        readings.append(DeviceReading(
            info=static.get(device, DeviceInfo(device=device, vendor=VENDOR, model="")),
            up=True,
            power_watts=_get(tool, f"{what} power", _watts,
                             _first(power, "socket_power", "current_socket_power", "average_socket_power")),
            temperature_celsius=_get(tool, f"{what} temperature", _celsius,
                                     _first(temp, "hotspot", "junction", "edge")),
            utilization_ratio=_get(tool, f"{what} gfx_activity", _percent, _first(usage, "gfx_activity")),
            memory_used_bytes=_get(tool, f"{what} used_vram", _amd_mib, _first(mem, "used_vram")),
            memory_total_bytes=_get(tool, f"{what} total_vram", _amd_mib, _first(mem, "total_vram")),
            clock_hertz=_get(tool, f"{what} gfx clock", _mhz, _first(gfx, "clk", "cur_clk")),
            clock_max_hertz=_get(tool, f"{what} gfx max clock", _mhz, _first(gfx, "max_clk")),
            energy_joules_total=_get(tool, f"{what} energy", _joules,
                                     _first(energy, "total_energy_consumption")),
            throttled={"THROTTLED": True, "UNTHROTTLED": False}.get(throttle)
            if isinstance(throttle, str) else None,
            errors_total=errors,
        ))
    return units.check_unique(readings, tool)


def _error_counts(tool: str, what: str, raw: Mapping[str, object]) -> dict[str, int]:
    out = {}
    for kind, value in raw.items():
        count = _get(tool, f"{what} {kind} count", _count, value)
        if count is not None:
            out[kind] = count
    return out


# --- amd-smi monitor (table) ------------------------------------------------------------------

# One cell: a number or N/A, optionally followed by its unit ("141 W", "40 °C", "N/A Mb/s").
_MONITOR_CELL = re.compile(
    r"(?P<num>N/A|[-+]?\d+(?:\.\d+)?)(?:[ \t]+(?!N/A\b)(?P<unit>°C|[A-Za-z%][A-Za-z%/]*))?")
_MONITOR_COLUMNS: Mapping[str, tuple[str, Callable[[object], Any]]] = {
    "POWER": ("power_watts", _watts),
    "GPU_TEMP": ("temperature_celsius", _celsius), "GPU_T": ("temperature_celsius", _celsius),
    "GFX_UTIL": ("utilization_ratio", _percent), "GFX%": ("utilization_ratio", _percent),
    "GFX_CLOCK": ("clock_hertz", _mhz), "GFX_CLK": ("clock_hertz", _mhz),
    "VRAM_USED": ("memory_used_bytes", _amd_mib), "VRAM_TOTAL": ("memory_total_bytes", _amd_mib),
}
_MONITOR_ERRORS = {"SINGLE_ECC": "ecc_corrected", "DOUBLE_ECC": "ecc_uncorrected", "PCIE_REPLAY": "pcie"}


def _banner(text: str) -> tuple[str, str]:
    """(amdgpu driver version, ROCm version) from ``amd-smi version``'s banner line, if present."""
    driver = re.search(r"amdgpu version:\s*([^|\s]+)", text)
    rocm = re.search(r"ROCm version:\s*([^|\s]+)", text)
    pick = [m.group(1) if m and not units.is_absent(m.group(1)) else "" for m in (driver, rocm)]
    return pick[0], pick[1]


def parse_monitor(text: str) -> tuple[DeviceReading, ...]:
    """``amd-smi monitor`` table (any column selection) -> readings.

    The table starts at the ``GPU ...`` header line; anything before it (the ``amd-smi version``
    banner, permission warnings merged from stderr) is skipped, and it ends at the first line that
    is not a GPU row (blank line, ``PROCESS INFO:``).
    """
    tool = "amd-smi monitor"
    if not isinstance(text, str):
        raise _fail(tool, f"expected text output, got {type(text).__name__}")
    driver, rocm = _banner(text)
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.split()[:1] == ["GPU"] and len(line.split()) > 1),
                 None)
    if start is None:
        raise _fail(tool, "no 'GPU ...' header line")
    header = lines[start].split()
    units.note_unknown_columns(tool, header[1:], (*_MONITOR_COLUMNS, *_MONITOR_ERRORS))
    readings = []
    for line in lines[start + 1:]:
        first = line.split()[0] if line.strip() else ""
        if not first.isdecimal():
            break
        cells = [m.group(0) for m in _MONITOR_CELL.finditer(line)]
        if _MONITOR_CELL.sub("", line).strip() or len(cells) != len(header) or cells[0] != first:
            raise _fail(tool, f"row does not match the header ({len(header)} columns): {line.strip()!r}")
        device = first.lstrip("0") or "0"
        fields: dict[str, Any] = {}
        errors: dict[str, int] = {}
        for name, cell in zip(header[1:], cells[1:], strict=True):
            what = f"GPU {device} {name}"
            if name in _MONITOR_COLUMNS:
                attr, convert = _MONITOR_COLUMNS[name]
                fields[attr] = _get(tool, what, convert, cell)
            elif name in _MONITOR_ERRORS:
                count = _get(tool, what, _count, cell)
                if count is not None:
                    errors[_MONITOR_ERRORS[name]] = count
        readings.append(DeviceReading(
            info=DeviceInfo(device=device, vendor=VENDOR, model="", driver_version=driver,
                            runtime_version=rocm),
            up=True, errors_total=errors, **fields))
    if not readings:
        raise _fail(tool, "no GPU rows under the header")
    return units.check_unique(readings, tool)


# --- rocm-smi --json --------------------------------------------------------------------------

ROCM_SMI_ARGS = (
    "--showproductname", "--showuniqueid", "--showvbios", "--showdriverversion", "--showtemp",
    "--showpower", "--showmaxpower", "--showuse", "--showmeminfo", "vram", "--showclocks",
    "--showreplaycount", "--json",
)


def _model(card: Mapping[str, Any]) -> str:
    """The first model name rocm-smi gives; PCI ids (``0x1002`` in every name field of ROCm 4.3,
    ``0x6601`` in "Card model") are identifiers, not names, and are skipped."""
    for key in ("device name", "card series", "card model"):
        value = _str(card.get(key))
        if value and not units.is_pci_id(value):
            return value
    return ""


def parse_rocm_smi_json(text: str) -> tuple[DeviceReading, ...]:
    """``rocm-smi ... --json``: ``{"card0": {...}, ..., "system": {"Driver version": ..}}``."""
    tool = "rocm-smi"
    doc = _load_json(tool, text)
    if not isinstance(doc, dict):
        raise _fail(tool, "expected a JSON object keyed by card")
    system = doc.get("system")
    driver = _str(_first(system, "Driver version")) if isinstance(system, dict) else ""
    readings = []
    for key, card in doc.items():
        m = re.fullmatch(r"card(\d+)", key)
        if m is None:
            continue
        if not isinstance(card, dict):
            raise _fail(tool, f"{key} is a {type(card).__name__}, expected an object")
        c = {k.lower(): v for k, v in card.items() if isinstance(k, str)}
        what = key
        pcie = _get(tool, f"{what} PCIe Replay Count", _count, _first(c, "pcie replay count"))
        readings.append(DeviceReading(
            info=DeviceInfo(device=m.group(1).lstrip("0") or "0", vendor=VENDOR,
                            model=_model(c),
                            uuid=_str(_first(c, "unique id")), driver_version=driver,
                            firmware_version=_str(_first(c, "vbios version"))),
            up=True,
            temperature_celsius=_get(tool, f"{what} temperature", _celsius, _first(
                c, "temperature (sensor junction) (c)", "temperature (sensor edge) (c)")),
            power_watts=_get(tool, f"{what} power", _watts, _first(
                c, "current socket graphics package power (w)", "average graphics package power (w)")),
            power_limit_watts=_get(tool, f"{what} max power", _watts,
                                   _first(c, "max graphics package power (w)")),
            utilization_ratio=_get(tool, f"{what} GPU use", _percent, _first(c, "gpu use (%)")),
            memory_used_bytes=_get(tool, f"{what} VRAM used", _bytes,
                                   _first(c, "vram total used memory (b)")),
            memory_total_bytes=_get(tool, f"{what} VRAM total", _bytes, _first(c, "vram total memory (b)")),
            clock_hertz=_get(tool, f"{what} sclk", _mhz, _first(c, "sclk clock speed:")),
            errors_total={} if pcie is None else {"pcie": pcie},
        ))
    if not readings:
        raise _fail(tool, "no cardN objects in the output")
    return units.check_unique(readings, tool)


# --- amdsmi Python library --------------------------------------------------------------------

def read_amdsmi(lib: ModuleType | Any) -> tuple[DeviceReading, ...]:
    """Readings through an initialised ``amdsmi`` module (or an object with the same API).

    Every call is optional: a GPU or amdsmi release that lacks a function, or raises
    ``AmdSmiException`` for it ("not supported" on this ASIC), leaves that field absent.
    """
    lib_error: type[BaseException] = getattr(lib, "AmdSmiException", Exception)
    tool = "amdsmi"

    def call(name: str, *args: Any) -> Any:
        fn = getattr(lib, name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except lib_error:
            return None

    def enum(cls: str, *members: str) -> Any:
        holder = getattr(lib, cls, None)
        return next((getattr(holder, m) for m in members if hasattr(holder, m)), None)

    hotspot = enum("AmdSmiTemperatureType", "HOTSPOT", "JUNCTION")
    current = enum("AmdSmiTemperatureMetric", "CURRENT")
    gfx_clk = enum("AmdSmiClkType", "GFX")
    handles = call("amdsmi_get_processor_handles")
    if not isinstance(handles, (list, tuple)):
        raise _fail(tool, "amdsmi_get_processor_handles() returned no device list")

    def dict_of(name: str, *args: Any) -> Mapping[str, Any]:
        value = call(name, *args)
        return value if isinstance(value, dict) else {}

    readings = []
    for index, h in enumerate(handles):
        what = f"GPU {index}"
        power, vram = dict_of("amdsmi_get_power_info", h), dict_of("amdsmi_get_gpu_vram_usage", h)
        clk = dict_of("amdsmi_get_clock_info", h, gfx_clk) if gfx_clk is not None else {}
        ecc, energy = dict_of("amdsmi_get_gpu_total_ecc_count", h), dict_of("amdsmi_get_energy_count", h)
        cap = _first(dict_of("amdsmi_get_power_cap_info", h), "power_cap")  # microwatts
        vbios = dict_of("amdsmi_get_gpu_vbios_info", h)
        temp = call("amdsmi_get_temp_metric", h, hotspot, current) if None not in (hotspot, current) else None
        throttle = _first(dict_of("amdsmi_get_gpu_metrics_info", h), "throttle_status")
        acc = _first(energy, "energy_accumulator", "power")
        resolution = _first(energy, "counter_resolution")  # microjoules per tick
        errors = _error_counts(tool, what, {
            "ecc_corrected": _first(ecc, "correctable_count"),
            "ecc_uncorrected": _first(ecc, "uncorrectable_count"),
            "pcie": call("amdsmi_get_gpu_pci_replay_counter", h),
        })
        readings.append(DeviceReading(
            info=DeviceInfo(
                device=str(index), vendor=VENDOR,
                model=_str(_first(dict_of("amdsmi_get_gpu_asic_info", h), "market_name")),
                uuid=_str(call("amdsmi_get_gpu_device_uuid", h)),
                driver_version=_str(_first(dict_of("amdsmi_get_gpu_driver_info", h), "driver_version")),
                firmware_version=_str(_first(vbios, "version", "vbios_version")),
            ),
            up=True,
            power_watts=_get(tool, f"{what} power", _watts,
                             _first(power, "socket_power", "current_socket_power", "average_socket_power")),
            power_limit_watts=_get(tool, f"{what} power cap", lambda v: units.to_watts(v, "uW"), cap),
            temperature_celsius=_get(tool, f"{what} temperature", _celsius, temp),
            utilization_ratio=_get(tool, f"{what} gfx_activity", _percent,
                                   _first(dict_of("amdsmi_get_gpu_activity", h), "gfx_activity")),
            memory_used_bytes=_get(tool, f"{what} vram_used", _amd_mib, _first(vram, "vram_used")),
            memory_total_bytes=_get(tool, f"{what} vram_total", _amd_mib, _first(vram, "vram_total")),
            clock_hertz=_get(tool, f"{what} gfx clock", _mhz, _first(clk, "clk", "cur_clk")),
            clock_max_hertz=_get(tool, f"{what} gfx max clock", _mhz, _first(clk, "max_clk")),
            energy_joules_total=_energy(tool, what, acc, resolution),
            throttled=bool(throttle) if isinstance(throttle, int) else None,
            errors_total=errors,
        ))
    return tuple(readings)


def _energy(tool: str, what: str, ticks: Any, resolution: Any) -> float | None:
    count = _get(tool, f"{what} energy accumulator", _count, ticks)
    res = _get(tool, f"{what} energy resolution", units.parse_number, resolution)
    if count is None or res is None:
        return None
    if res < 0:
        raise _fail(tool, f"{what}: negative energy counter resolution {resolution!r}")
    return count * res * 1e-6


# --- backend ----------------------------------------------------------------------------------

def _import_amdsmi() -> ModuleType | None:
    try:
        return importlib.import_module("amdsmi")
    except (ImportError, OSError):  # not installed, or libamd_smi.so missing
        return None


# /dev/kfd is the ROCm compute interface: present only with amdgpu loaded on a compute-capable GPU.
DETECTION = Detection(device_globs=("/dev/kfd",), libraries=("amd_smi",), tools=("amd-smi", "rocm-smi"))


def detect() -> bool:
    """An AMD GPU host: the KFD compute node, the amd_smi library, or an SMI tool on PATH."""
    return DETECTION.present()


@dataclass(frozen=True)
class AmdOptions(ToolOptions):
    source: str = "auto"  # see SOURCES


@register("amd", options=AmdOptions, detection=DETECTION)
class AmdBackend(ReadingsBackend):
    """AMD GPUs through ``source`` (see the module docstring); ``tool_path`` names the CLI to run
    (``rocm-smi`` when its file name says so, ``amd-smi`` otherwise)."""

    name = "amd"

    def __init__(self, *, node: str = "", tool_path: str | None = None, timeout: float = 5.0,
                 source: str = "auto") -> None:
        if source not in SOURCES:
            raise BackendError(f"amd: unknown source {source!r}; choose one of {', '.join(SOURCES)}")
        self.node = node
        self.timeout = timeout
        self._tool_path = tool_path
        self._source = source
        self._lib: ModuleType | None = None
        self._static: dict[str, DeviceInfo] | None = None
        self.last_errors: dict[str, str] = {}  # a failed sub-command (amd-smi static) -> message

    def _pick_source(self) -> str:
        if self._source != "auto":
            return self._source
        if self._tool_path:
            return "rocm-smi" if os.path.basename(self._tool_path).startswith("rocm-smi") else "amd-smi"
        if _import_amdsmi() is not None:
            return "library"
        if shutil.which("amd-smi"):
            return "amd-smi"
        if shutil.which("rocm-smi"):
            return "rocm-smi"
        raise BackendError("amd: neither the amdsmi library nor amd-smi/rocm-smi is available")

    def _run(self, default_tool: str, *args: str) -> str:
        return run_tool([resolve_tool(self._tool_path or default_tool), *args], timeout=self.timeout)

    def _static_info(self) -> dict[str, DeviceInfo]:
        if self._static is None:
            try:
                self._static = parse_static_json(self._run("amd-smi", "static", "--json"))
            except BackendError as exc:
                log.warning("amd-smi static unavailable, model and versions omitted: %s", exc)
                self.last_errors = {"amd-smi static": str(exc)}
                return {}
            self.last_errors = {}
        return self._static

    def _read(self) -> tuple[DeviceReading, ...]:
        source = self._pick_source()
        if source == "library":
            if self._lib is None:
                lib = _import_amdsmi()
                if lib is None:
                    raise BackendError("amdsmi: the Python library cannot be imported")
                try:
                    lib.amdsmi_init()
                except Exception as exc:  # AmdSmiLibraryException: no driver, no permission
                    raise BackendError(f"amdsmi: amdsmi_init() failed: {exc}") from exc
                self._lib = lib
            return read_amdsmi(self._lib)
        if source == "amd-smi":
            return parse_metric_json(self._run("amd-smi", "metric", "--json"), self._static_info())
        if source == "amd-smi-monitor":
            return parse_monitor(self._run("amd-smi", "monitor"))
        return parse_rocm_smi_json(self._run("rocm-smi", *ROCM_SMI_ARGS))

    def discover(self) -> tuple[DeviceInfo, ...]:
        self._static = None  # re-read identity on an explicit rediscovery
        return super().discover()


    def close(self) -> None:
        if self._lib is not None:
            shut_down = getattr(self._lib, "amdsmi_shut_down", None)
            self._lib = None
            if shut_down is not None:
                shut_down()


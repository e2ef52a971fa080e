"""NVIDIA GPUs through NVML, with ``nvidia-smi`` as the fallback whenever NVML cannot be used.

NVML (``pynvml`` from the optional ``nvidia-ml-py`` extra) is the primary path: a read costs a few
microseconds in-process (about 3.3 us a call on the H100 fixture machine) against ~40 ms for one
``nvidia-smi`` process, and each call fails on its own, so an unsupported counter becomes one
absent metric (``None``, never 0) instead of a failed sample. When ``pynvml`` cannot be imported,
or NVML cannot initialise (``NVML Shared Library Not Found``, driver/library version mismatch, no
permission), the backend runs ``nvidia-smi -q -x`` (everything, slower) or, with ``smi_format="csv"``,
``nvidia-smi --query-gpu=... --format=csv`` (cheaper, no throttle threshold or CUDA version), and
maps both onto the same readings as NVML.

Throttle reasons: NVML reports a "clock event reasons" bitmask. Each active bit is mapped onto
the schema's closed set along two axes, cause (``thermal`` / ``power_cap``) and who acts
(``hw_slowdown`` / ``sw_slowdown``), so e.g. the software power cap (0x4) sets both ``power_cap``
and ``sw_slowdown``. Idle, sync boost, application and display clock settings are not throttling.

Errors: volatile ECC counts (reset when the driver reloads, which a counter tolerates) become
``ecc_corrected``/``ecc_uncorrected`` and the PCIe replay counter becomes ``pcie``. Retired pages
and remapped rows are consequences of ECC errors already counted, so they are not added again;
instead a pending retirement/remap (needs a GPU reset) or a failed remap makes ``healthy`` False.
"""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, ModuleType
from typing import Any

from npuobs.devices import units
from npuobs.devices.autodetect import Detection
from npuobs.devices.base import BackendError, DeviceInfo, DeviceReading, ReadingsBackend
from npuobs.devices.options import ToolOptions
from npuobs.devices.registry import register
from npuobs.devices.toolrun import resolve_tool, run_tool

VENDOR = "nvidia"

DETECTION = Detection(
    device_globs=("/dev/nvidia[0-9]*",), libraries=("nvidia-ml",), tools=("nvidia-smi",)
)

# Clock event reason bits (nvml.h, nvmlClocksEventReason*), keyed by the names nvidia-smi prints.
REASON_BIT: Mapping[str, int] = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clocks_setting": 0x100,
}
_B = REASON_BIT
# schema.THROTTLE_REASONS -> the NVML bits that make it active
THROTTLE_BITS: Mapping[str, int] = {
    "thermal": _B["sw_thermal_slowdown"] | _B["hw_thermal_slowdown"],
    "power_cap": _B["sw_power_cap"] | _B["hw_power_brake_slowdown"],
    "hw_slowdown": _B["hw_slowdown"] | _B["hw_thermal_slowdown"] | _B["hw_power_brake_slowdown"],
    "sw_slowdown": _B["sw_power_cap"] | _B["sw_thermal_slowdown"],
}
_THROTTLING = 0
for _bits in THROTTLE_BITS.values():
    _THROTTLING |= _bits

# Fields the CSV path asks nvidia-smi for (see ``parse_query_csv``).
QUERY_FIELDS: tuple[str, ...] = (
    "index", "uuid", "name", "driver_version", "vbios_version", "temperature.gpu", "power.draw",
    "enforced.power.limit", "utilization.gpu", "memory.used", "memory.total", "clocks.current.sm",
    "clocks.max.sm", "clocks_event_reasons.active", "ecc.errors.corrected.volatile.total",
    "ecc.errors.uncorrected.volatile.total", "retired_pages.pending", "remapped_rows.pending",
    "remapped_rows.failure",
)


def detect() -> bool:
    """True when this host shows an NVIDIA GPU, its NVML library or ``nvidia-smi``."""
    return DETECTION.present()


def throttle_from_mask(mask: int | None) -> tuple[bool | None, Mapping[str, bool]]:
    """``(throttled, {reason: active})`` from an NVML clock event reasons bitmask."""
    if mask is None:
        return None, MappingProxyType({})
    if mask < 0:
        raise BackendError(f"clock event reasons {mask:#x} is not a bitmask")
    active = {reason: bool(mask & bits) for reason, bits in THROTTLE_BITS.items()}
    return bool(mask & _THROTTLING), MappingProxyType(active)


def cuda_version_text(version: int | None) -> str:
    """NVML's CUDA driver version integer (13000) as CUDA writes it ("13.0")."""
    return "" if version is None else f"{version // 1000}.{version % 1000 // 10}"


def _health(*problems: bool | None) -> bool | None:
    """Healthy unless a known problem is present; None when no signal could be read."""
    known = [p for p in problems if p is not None]
    return None if not known else not any(known)


def _errors(**counts: int | None) -> Mapping[str, int]:
    """The counters that were read; a negative count is garbage, not a reading."""
    for kind, n in counts.items():
        if n is not None and n < 0:
            raise BackendError(f"negative {kind} error count {n}")
    return MappingProxyType({kind: int(n) for kind, n in counts.items() if n is not None})


# --- NVML -------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """NVML strings: ``str`` in current bindings, ``bytes`` in old ones, None when unavailable."""
    if value is None:
        return ""
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class _NvmlReader:
    """Reads one NVML instance; every call that raises ``NVMLError`` yields ``None``."""

    def __init__(self, nvml: Any) -> None:
        self.nvml = nvml

    def get(self, function: str, *args: Any) -> Any:
        fn = getattr(self.nvml, function, None)
        if fn is None:  # older bindings lack newer calls: the value is simply unknown
            return None
        try:
            return fn(*args)
        except self.nvml.NVMLError:
            return None

    def devices(self) -> tuple[DeviceReading, ...]:
        nvml = self.nvml
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            raise BackendError(f"NVML: nvmlDeviceGetCount failed: {exc}") from exc
        driver = _text(self.get("nvmlSystemGetDriverVersion"))
        cuda = cuda_version_text(self.get("nvmlSystemGetCudaDriverVersion"))
        readings: list[DeviceReading] = []
        for i in range(count):
            readings.append(self.device(i, driver, cuda))
            readings.extend(self.mig_devices(i, readings[-1].info))
        return tuple(readings)

    def mig_devices(self, index: int, parent: DeviceInfo) -> list[DeviceReading]:
        """The MIG instances of GPU ``index`` when MIG mode is on: each a device of its own (id
        ``<gpu>/gi<N>/ci<M>``, ``parent`` = the GPU) with its own memory and identity; NVML reports
        no utilization, power or temperature per instance (those stay on the parent)."""
        nvml = self.nvml
        try:
            h = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError:
            return []
        mode = self.get("nvmlDeviceGetMigMode", h)  # (current, pending); 1 = enabled
        if not mode or mode[0] != 1:
            return []
        out = []
        for slot in range(self.get("nvmlDeviceGetMaxMigDeviceCount", h) or 0):
            mig = self.get("nvmlDeviceGetMigDeviceHandleByIndex", h, slot)
            if mig is None:  # an empty slot: NVML_ERROR_NOT_FOUND
                continue
            gi = self.get("nvmlDeviceGetGpuInstanceId", mig)
            ci = self.get("nvmlDeviceGetComputeInstanceId", mig)
            mem = self.get("nvmlDeviceGetMemoryInfo", mig)
            out.append(DeviceReading(
                info=DeviceInfo(
                    device=mig_device_id(str(index), gi if gi is not None else slot, ci or 0),
                    vendor=VENDOR, model=_text(self.get("nvmlDeviceGetName", mig)) or parent.model,
                    uuid=_text(self.get("nvmlDeviceGetUUID", mig)), driver_version=parent.driver_version,
                    firmware_version=parent.firmware_version, runtime_version=parent.runtime_version,
                    parent=str(index)),
                up=True,
                memory_used_bytes=None if mem is None else int(mem.used),
                memory_total_bytes=None if mem is None else int(mem.total),
            ))
        return out

    def device(self, index: int, driver: str, cuda: str) -> DeviceReading:
        nvml = self.nvml
        try:
            h = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError:  # e.g. GPU_IS_LOST: known to the driver but not answering
            return DeviceReading(info=DeviceInfo(str(index), VENDOR, "", driver_version=driver,
                                                 runtime_version=cuda), up=False)
        get = self.get
        info = DeviceInfo(
            device=str(index), vendor=VENDOR, model=_text(get("nvmlDeviceGetName", h)),
            uuid=_text(get("nvmlDeviceGetUUID", h)), driver_version=driver,
            firmware_version=_text(get("nvmlDeviceGetVbiosVersion", h)), runtime_version=cuda,
        )
        power_mw = get("nvmlDeviceGetPowerUsage", h)
        limit_mw = get("nvmlDeviceGetEnforcedPowerLimit", h)
        energy_mj = get("nvmlDeviceGetTotalEnergyConsumption", h)
        util = get("nvmlDeviceGetUtilizationRates", h)
        mem = get("nvmlDeviceGetMemoryInfo", h)
        clock = get("nvmlDeviceGetClockInfo", h, nvml.NVML_CLOCK_SM)
        clock_max = get("nvmlDeviceGetMaxClockInfo", h, nvml.NVML_CLOCK_SM)
        mask = get("nvmlDeviceGetCurrentClocksEventReasons", h)
        if mask is None:  # the pre-12.535 name of the same call
            mask = get("nvmlDeviceGetCurrentClocksThrottleReasons", h)
        throttled, reasons = throttle_from_mask(mask)
        remapped = get("nvmlDeviceGetRemappedRows", h)  # (corrected, uncorrected, pending, failed)
        retire_pending = get("nvmlDeviceGetRetiredPagesPendingStatus", h)
        return DeviceReading(
            info=info,
            up=True,
            healthy=_health(
                None if remapped is None else bool(remapped[2]),
                None if remapped is None else bool(remapped[3]),
                None if retire_pending is None else bool(retire_pending),
            ),
            temperature_celsius=_float(get("nvmlDeviceGetTemperature", h, nvml.NVML_TEMPERATURE_GPU)),
            temperature_throttle_threshold_celsius=_float(get(
                "nvmlDeviceGetTemperatureThreshold", h, nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)),
            power_watts=None if power_mw is None else power_mw / 1000.0,
            power_limit_watts=None if limit_mw is None else limit_mw / 1000.0,
            energy_joules_total=None if energy_mj is None else energy_mj / 1000.0,
            utilization_ratio=None if util is None else util.gpu / 100.0,
            memory_used_bytes=None if mem is None else int(mem.used),
            memory_total_bytes=None if mem is None else int(mem.total),
            clock_hertz=None if clock is None else clock * 1e6,
            clock_max_hertz=None if clock_max is None else clock_max * 1e6,
            throttled=throttled,
            throttle_reasons=reasons,
            errors_total=_errors(
                ecc_corrected=get("nvmlDeviceGetTotalEccErrors", h, nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
                                  nvml.NVML_VOLATILE_ECC),
                ecc_uncorrected=get("nvmlDeviceGetTotalEccErrors", h, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                                    nvml.NVML_VOLATILE_ECC),
                pcie=get("nvmlDeviceGetPcieReplayCounter", h),
            ),
        )


def mig_device_id(gpu: str, gpu_instance: int | str, compute_instance: int | str) -> str:
    """``"0/gi3/ci0"``: a MIG instance's device id, named like ``nvidia-smi mig -lgi/-lci`` do."""
    return f"{gpu}/gi{gpu_instance}/ci{compute_instance}"


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


# --- nvidia-smi -q -x -------------------------------------------------------------------------


def _xml(elem: ET.Element, *paths: str) -> str | None:
    """Text of the first of ``paths`` that exists with a real value (not ``N/A``)."""
    for path in paths:
        found = elem.find(path)
        if found is not None and found.text is not None and not units.is_absent(found.text):
            return found.text.strip()
    return None


def _yes_no(text: str | None) -> bool | None:
    if text is None or units.is_absent(text):
        return None
    word = text.strip().lower()
    if word in ("yes", "active", "enabled"):
        return True
    if word in ("no", "not active", "disabled"):
        return False
    raise BackendError(f"expected Yes/No or Active/Not Active, got {text!r}")


def _ecc_sum(volatile: ET.Element | None, kind: str) -> int | None:
    """Sum of the volatile ECC counters of one kind ("correctable" / "uncorrectable").

    DTD v11/v12 have ``sram_uncorrectable``; v13 splits it into ``sram_uncorrectable_parity`` and
    ``sram_uncorrectable_secded``, so counters are matched by name rather than listed. Drivers
    before DTD v11 (and vGPU guests) use the older layout: ``single_bit`` (corrected) and
    ``double_bit`` (uncorrected) blocks, each with per-memory counters and a ``total``.
    """
    if volatile is None:
        return None
    legacy = volatile.find("single_bit" if kind == "correctable" else "double_bit")
    if legacy is not None:
        total = units.parse_int(_xml(legacy, "total"))
        if total is not None:
            return total
        parts = [units.parse_int(child.text) for child in legacy if child.tag != "total" and child.text]
        known = [v for v in parts if v is not None]
        return sum(known) if known else None
    values = [
        units.parse_int(child.text)
        for child in volatile
        if child.tag.split("_")[1:2] == [kind] and child.text is not None
    ]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _xml_reasons(gpu: ET.Element) -> int | None:
    block = gpu.find("clocks_event_reasons")
    prefix = "clocks_event_reason_"
    if block is None:  # DTD v11/v12
        block, prefix = gpu.find("clocks_throttle_reasons"), "clocks_throttle_reason_"
    if block is None:
        return None
    mask, seen = 0, False
    for child in block:
        bit = REASON_BIT.get(child.tag.removeprefix(prefix))
        active = _yes_no(child.text)
        if bit is None or active is None:
            continue
        seen = True
        if active:
            mask |= bit
    return mask if seen else None


def _xml_gpu(gpu: ET.Element, index: int, driver: str, cuda: str) -> DeviceReading:
    info = DeviceInfo(
        device=str(index), vendor=VENDOR, model=_xml(gpu, "product_name") or "",
        uuid=_xml(gpu, "uuid") or "", driver_version=driver,
        firmware_version=_xml(gpu, "vbios_version") or "", runtime_version=cuda,
    )
    throttled, reasons = throttle_from_mask(_xml_reasons(gpu))
    return DeviceReading(
        info=info,
        up=True,
        healthy=_health(
            _yes_no(_xml(gpu, "remapped_rows/remapped_row_pending")),
            _yes_no(_xml(gpu, "remapped_rows/remapped_row_failure")),
            _yes_no(_xml(gpu, "retired_pages/pending_retirement")),
        ),
        temperature_celsius=units.to_celsius(_xml(gpu, "temperature/gpu_temp")),
        # DTD v13 only gives margins relative to T.Limit, not the slowdown temperature itself.
        temperature_throttle_threshold_celsius=units.to_celsius(
            _xml(gpu, "temperature/gpu_temp_slow_threshold")),
        power_watts=units.to_watts(_xml(
            gpu, "gpu_power_readings/power_draw", "gpu_power_readings/average_power_draw",
            "gpu_power_readings/instant_power_draw", "power_readings/power_draw")),
        power_limit_watts=units.to_watts(_xml(
            gpu, "power_readings/enforced_power_limit", "gpu_power_readings/current_power_limit",
            "power_readings/power_limit")),
        utilization_ratio=units.to_ratio(_xml(gpu, "utilization/gpu_util")),
        memory_used_bytes=units.to_bytes(_xml(gpu, "fb_memory_usage/used"), "MiB"),
        memory_total_bytes=units.to_bytes(_xml(gpu, "fb_memory_usage/total"), "MiB"),
        clock_hertz=units.to_hertz(_xml(gpu, "clocks/sm_clock"), "MHz"),
        clock_max_hertz=units.to_hertz(_xml(gpu, "max_clocks/sm_clock"), "MHz"),
        throttled=throttled,
        throttle_reasons=reasons,
        errors_total=_errors(
            ecc_corrected=_ecc_sum(gpu.find("ecc_errors/volatile"), "correctable"),
            ecc_uncorrected=_ecc_sum(gpu.find("ecc_errors/volatile"), "uncorrectable"),
            pcie=units.parse_int(_xml(gpu, "pci/replay_counter")),
        ),
    )


def _xml_mig(mig: ET.Element, parent: DeviceInfo) -> DeviceReading:
    """One ``<mig_device>``: its GPU/compute instance ids, memory and SRAM ECC count. nvidia-smi
    prints no utilization, power or temperature per instance; those stay on the parent GPU."""
    gi = _xml(mig, "gpu_instance_id")
    ci = _xml(mig, "compute_instance_id") or "0"
    if gi is None:
        raise BackendError("a <mig_device> without gpu_instance_id")
    uncorrected = _ecc_sum(mig.find("ecc_error_count/volatile_count"), "uncorrectable")
    return DeviceReading(
        info=DeviceInfo(device=mig_device_id(parent.device, gi, ci), vendor=VENDOR, model=parent.model,
                        uuid=_xml(mig, "uuid") or "", driver_version=parent.driver_version,
                        firmware_version=parent.firmware_version, runtime_version=parent.runtime_version,
                        parent=parent.device),
        up=True,
        memory_used_bytes=units.to_bytes(_xml(mig, "fb_memory_usage/used"), "MiB"),
        memory_total_bytes=units.to_bytes(_xml(mig, "fb_memory_usage/total"), "MiB"),
        errors_total=_errors(ecc_uncorrected=uncorrected),
    )


def parse_smi_xml(text: str) -> tuple[DeviceReading, ...]:
    """Readings from ``nvidia-smi -q -x`` (DTD v11 to v13).

    GPUs are numbered in document order, which is nvidia-smi's index order; ``attached_gpus`` is
    not trusted to match the number of ``<gpu>`` elements. Each ``<mig_device>`` of a GPU in MIG
    mode follows its GPU as a device of its own (``_xml_mig``).
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise BackendError(f"nvidia-smi -q -x: not well-formed XML: {exc}") from exc
    if root.tag != "nvidia_smi_log":
        raise BackendError(f"nvidia-smi -q -x: root element is <{root.tag}>, expected <nvidia_smi_log>")
    gpus = root.findall("gpu")
    if not gpus:
        raise BackendError("nvidia-smi -q -x: no <gpu> element")
    driver = _xml(root, "driver_version") or ""
    cuda = _xml(root, "cuda_version") or ""
    readings = []
    for index, gpu in enumerate(gpus):
        try:
            parent = _xml_gpu(gpu, index, driver, cuda)
            readings.append(parent)
            readings.extend(_xml_mig(mig, parent.info) for mig in gpu.findall("mig_devices/mig_device"))
        except BackendError as exc:
            raise BackendError(f"nvidia-smi -q -x, GPU {index}: {exc}") from exc
    return tuple(readings)


# --- nvidia-smi --query-gpu --format=csv ------------------------------------------------------


def _field_name(header: str) -> str:
    """``"power.draw [W]"`` -> ``"power.draw"`` (the header keeps units even with ``nounits``)."""
    return header.split(" [", 1)[0].strip()


def _csv_gpu(row: Mapping[str, str], position: int) -> DeviceReading:
    def value(*names: str) -> str | None:
        for name in names:
            text = row.get(name)
            if text is not None and not units.is_absent(text):
                return text.strip()
        return None

    mask = units.parse_int(value("clocks_event_reasons.active", "clocks_throttle_reasons.active"))
    if mask is None:
        bits = {bit: _yes_no(value(f"clocks_event_reasons.{name}", f"clocks_throttle_reasons.{name}"))
                for name, bit in REASON_BIT.items()}
        if any(active is not None for active in bits.values()):
            mask = sum(bit for bit, active in bits.items() if active)
    throttled, reasons = throttle_from_mask(mask)
    info = DeviceInfo(
        device=value("index") or str(position), vendor=VENDOR, model=value("name") or "",
        uuid=value("uuid") or "", driver_version=value("driver_version") or "",
        firmware_version=value("vbios_version") or "",
    )
    return DeviceReading(
        info=info,
        up=True,
        healthy=_health(_yes_no(value("remapped_rows.pending")), _yes_no(value("remapped_rows.failure")),
                        _yes_no(value("retired_pages.pending"))),
        temperature_celsius=units.to_celsius(value("temperature.gpu")),
        power_watts=units.to_watts(value("power.draw", "power.draw.average", "power.draw.instant")),
        power_limit_watts=units.to_watts(value("enforced.power.limit", "power.limit")),
        utilization_ratio=units.to_ratio(value("utilization.gpu")),
        memory_used_bytes=units.to_bytes(value("memory.used"), "MiB"),
        memory_total_bytes=units.to_bytes(value("memory.total"), "MiB"),
        clock_hertz=units.to_hertz(value("clocks.current.sm", "clocks.sm"), "MHz"),
        clock_max_hertz=units.to_hertz(value("clocks.max.sm"), "MHz"),
        throttled=throttled,
        throttle_reasons=reasons,
        errors_total=_errors(
            ecc_corrected=units.parse_int(value("ecc.errors.corrected.volatile.total")),
            ecc_uncorrected=units.parse_int(value("ecc.errors.uncorrected.volatile.total")),
        ),
    )


def parse_query_csv(text: str, fields: Sequence[str] | None = None) -> tuple[DeviceReading, ...]:
    """Readings from ``nvidia-smi --query-gpu=<fields> --format=csv[,nounits][,noheader]``.

    Without ``fields`` the first row must be the header nvidia-smi prints; pass the queried
    ``fields`` for ``noheader`` output. Values may carry units (``"35 W"``) or not (``nounits``):
    a bare value is read in nvidia-smi's unit for that field (W, MiB, MHz, %, C). Rows without an
    ``index`` field are numbered in order.
    """
    try:
        rows = [r for r in csv.reader(io.StringIO(text), skipinitialspace=True) if any(c.strip() for c in r)]
    except csv.Error as exc:  # NUL bytes, a field beyond the csv module's size limit
        raise BackendError(f"nvidia-smi --query-gpu: unreadable CSV: {exc}") from exc
    if fields is None:
        if not rows:
            raise BackendError("nvidia-smi --query-gpu: empty output, expected a header row")
        fields, rows = rows[0], rows[1:]
    names = [_field_name(f) for f in fields]
    if not {"name", "uuid", "index", "temperature.gpu", "power.draw", "memory.used"} & set(names):
        raise BackendError(f"nvidia-smi --query-gpu: header names no known field: {', '.join(names)[:200]}")
    if not rows:
        raise BackendError("nvidia-smi --query-gpu: no GPU rows")
    readings = []
    for position, row in enumerate(rows):
        if len(row) != len(names):
            raise BackendError(
                f"nvidia-smi --query-gpu, row {position}: {len(row)} values for {len(names)} fields")
        try:
            readings.append(_csv_gpu(dict(zip(names, row, strict=True)), position))
        except BackendError as exc:
            raise BackendError(f"nvidia-smi --query-gpu, row {position}: {exc}") from exc
    return units.check_unique(readings, "nvidia-smi --query-gpu")


# --- the backend ------------------------------------------------------------------------------


def _import_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


@dataclass(frozen=True)
class NvmlOptions(ToolOptions):
    smi_format: str = "xml"  # nvidia-smi fallback output: "xml" (complete) or "csv" (cheaper)


@register("nvml", options=NvmlOptions, detection=DETECTION)
class NvmlBackend(ReadingsBackend):
    """NVIDIA GPUs via NVML, or via ``nvidia-smi`` when NVML is not installed or does not initialise.

    ``nvml`` is the test seam: any object with pynvml's functions, constants and ``NVMLError``
    (the default is the real ``pynvml`` module). ``smi_format`` picks the fallback's output
    format: ``"xml"`` (complete) or ``"csv"`` (cheaper on many-GPU hosts).
    """

    name = "nvml"

    def __init__(self, *, node: str = "", tool_path: str | None = None, timeout: float = 5.0,
                 nvml: Any = None, smi_format: str = "xml") -> None:
        if smi_format not in ("xml", "csv"):
            raise BackendError(f"nvml: smi_format must be 'xml' or 'csv', not {smi_format!r}")
        self._nvml = nvml if nvml is not None else _import_pynvml()
        self._tool_path = tool_path
        self._tool: str | None = None
        self._timeout = timeout
        self._smi_format = smi_format
        self._initialized = False
        # why readings come from nvidia-smi instead of NVML (None while NVML works)
        self.fallback_reason: str | None = None

    @property
    def source(self) -> str:
        """Where the last readings came from: ``"nvml"`` or ``"nvidia-smi"``."""
        return "nvml" if self._nvml is not None and self.fallback_reason is None else "nvidia-smi"

    def _init_nvml(self) -> bool:
        """Initialise NVML once it can be; False (and ``fallback_reason`` set) while it cannot.

        Retried on every sample while failing: at node boot the exporter may start before the
        driver is loaded, and NVML is the cheaper, richer source once it works.
        """
        if self._initialized:
            return True
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:
            self.fallback_reason = f"NVML: nvmlInit failed: {exc}"
            return False
        self._initialized = True
        self.fallback_reason = None
        return True

    def _read(self) -> tuple[DeviceReading, ...]:
        if self._nvml is None:
            self.fallback_reason = "NVML: the pynvml bindings are not installed"
            return self._read_smi()
        if self._init_nvml():
            return _NvmlReader(self._nvml).devices()
        try:
            return self._read_smi()
        except BackendError as exc:
            raise BackendError(f"{self.fallback_reason}; nvidia-smi fallback: {exc}") from exc

    def _read_smi(self) -> tuple[DeviceReading, ...]:
        if self._tool is None:
            self._tool = resolve_tool(self._tool_path or "nvidia-smi")
        if self._smi_format == "xml":
            return parse_smi_xml(run_tool([self._tool, "-q", "-x"], timeout=self._timeout))
        argv = [self._tool, f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv"]
        return parse_query_csv(run_tool(argv, timeout=self._timeout))


    def close(self) -> None:
        if self._initialized:
            self._initialized = False
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError:
                pass  # shutting down a library that already lost the GPU: nothing left to release

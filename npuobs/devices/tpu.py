"""Google Cloud TPU backend: parses the tables printed by ``tpu-info``.

Why ``tpu-info``: a TPU VM has no SMI tool and no sysfs telemetry. libtpu serves the runtime
metrics (duty cycle, HBM usage) on a local gRPC port, and only while a framework (JAX,
PyTorch/XLA) holds the chips; ``tpu-info`` is Google's supported client for it. It prints Rich
tables, never JSON, and the layout has changed between releases, so the parser is driven by the
column *headers*, not by positions:

* 0.1 (TPU v4): Unicode box drawing (``┃ │``), a ``TPU Utilization`` table with columns
  ``Device | Memory usage | Duty cycle``;
* later releases: ``TPU Runtime Utilization`` with ``Chip | HBM Usage (GiB) | Duty cycle``, drawn
  either with box characters or as ``| ... |`` Markdown-style rows;
* ``--metric duty_cycle_percent --metric hbm_usage``: a per-*core* ``TPU Duty Cycle`` table and a
  per-chip ``TPU HBM Usage`` table, without the ``TPU Chips`` inventory;
* ``--streaming``: the same tables redrawn with ANSI cursor/colour escapes; escapes are stripped
  and the last copy of each table wins, so a captured stream yields its newest frame.

When libtpu is not serving metrics (no framework attached) the runtime cells read ``N/A``: the
chips are still listed (``up``) but utilization and memory stay ``None``, never 0.

Mapping: duty cycle % -> ``utilization_ratio``; ``used / total`` GiB -> ``memory_used_bytes`` /
``memory_total_bytes``; libtpu version -> ``runtime_version``; chip type -> ``model``. tpu-info
reports no temperature, power, clocks, error counters or driver/firmware versions: those stay
absent. The ``TensorCore Utilization`` table (MXU busy fraction) is not the device duty cycle and is
not mapped.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from npuobs.devices import units
from npuobs.devices.autodetect import Detection, host_root
from npuobs.devices.base import BackendError, DeviceInfo, DeviceReading, ToolBackend
from npuobs.devices.options import ToolOptions
from npuobs.devices.registry import register
from npuobs.devices.toolrun import resolve_tool, run_tool

TOOL = "tpu-info"
VENDOR = "google"
# PCI vendor id of Google; TPU chips on v5e/v5p/v6e VMs are vfio-bound PCI functions.
_GOOGLE_PCI_VENDOR = "0x1ae0"

# CSI (colours, cursor moves, erase), OSC (window titles) and two-byte escapes that Rich emits
# when it redraws a live display.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_VERTICAL = "|│┃║"
# Everything a table border or header rule can be made of (no letters or digits).
_RULE_CHARS = set("─━═┄┅┈┉-=+:|│┃║┌┐└┘├┤┬┴┼┏┓┗┛┣┫┳┻╋┡┩╇╈┢┪┠┨┯┷┿╭╮╯╰╞╡╪╒╕╘╛ \t")
_TRAILING_NUMBER = re.compile(r"(\d+)$")


def _fail(problem: str) -> BackendError:
    return BackendError(f"{TOOL}: {problem}")


@dataclass(frozen=True)
class _Table:
    title: str
    header: tuple[str, ...]  # lower-cased column names
    rows: tuple[tuple[str, ...], ...]

    def find(self, *needles: str) -> int | None:
        """Index of the first column whose name contains one of ``needles``."""
        for i, name in enumerate(self.header):
            if any(n in name for n in needles):
                return i
        return None

    def column(self, *needles: str) -> int:
        """Like ``find``, for a column the table must have."""
        i = self.find(*needles)
        if i is None:
            raise _fail(f"table {self.title!r} has no {needles[0]!r} column")
        return i


def _clean(text: str) -> list[str]:
    """Lines without ANSI escapes; a carriage return (in-place redraw) keeps what follows it."""
    return [raw.rstrip("\r").rsplit("\r", 1)[-1] for raw in _ANSI.sub("", text).split("\n")]


def _is_rule(line: str) -> bool:
    return bool(line.strip()) and set(line) <= _RULE_CHARS


def _cells(line: str) -> tuple[str, ...] | None:
    """The cells of a table row (``│ a │ b │`` or ``| a | b |``), or None for any other line."""
    s = line.strip()
    if len(s) < 2 or s[0] not in _VERTICAL or s[-1] not in _VERTICAL:
        return None
    return tuple(c.strip() for c in re.split(f"[{_VERTICAL}]", s[1:-1]))


def _tables(lines: list[str]) -> list[_Table]:
    """Every table in ``text``: a run of row/rule lines, titled by the text line before it."""
    tables: list[_Table] = []
    title = ""
    block: list[tuple[str, ...]] = []

    def close() -> None:
        if block:
            header, *rows = block
            for row in rows:
                if len(row) != len(header):
                    raise _fail(f"table {title!r}: row {row!r} has {len(row)} cells, "
                                f"the header {len(header)}")
            tables.append(_Table(title, tuple(h.lower() for h in header), tuple(rows)))
            block.clear()

    for line in lines:
        if _is_rule(line):
            continue  # borders and header rules separate nothing we need
        cells = _cells(line)
        if cells is not None:
            block.append(cells)
            continue
        close()
        if line.strip():
            title = line.strip()
    close()
    return tables


def _header_value(lines: list[str], key: str) -> str:
    """``Libtpu version: 0.0.39`` style lines above the tables."""
    prefix = key.lower() + ":"
    for line in lines:
        if line.strip().lower().startswith(prefix):
            return line.split(":", 1)[1].strip()
    return ""


def _memory(cell: str) -> tuple[int | None, int | None]:
    """``"18.45 GiB / 31.25 GiB"`` -> (used, total) bytes; ``"N/A"`` -> (None, None)."""
    if units.is_absent(cell):
        return None, None
    parts = cell.split("/")
    if len(parts) != 2:
        raise _fail(f"cannot parse HBM usage {cell!r} (expected 'used / total')")
    try:
        used, total = units.to_bytes(parts[0]), units.to_bytes(parts[1])
    except BackendError as exc:
        raise _fail(f"HBM usage {cell!r}: {exc}") from None
    for value in (used, total):
        if value is not None and value < 0:
            raise _fail(f"negative HBM usage {cell!r}")
    return used, total


def _ratio(cell: str) -> float | None:
    try:
        value = units.to_ratio(cell)
    except BackendError as exc:
        raise _fail(f"duty cycle {cell!r}: {exc}") from None
    if value is not None and value < 0:
        raise _fail(f"negative duty cycle {cell!r}")
    return value


def _device_id(chip: str, position: int) -> str:
    """``/dev/vfio/3`` or ``/dev/accel3`` -> ``"3"`` (the kernel's per-node index); else the row."""
    m = _TRAILING_NUMBER.search(chip)
    return m.group(1) if m else str(position)


def _group_mean(values: Sequence[float | None], groups: int) -> list[float | None]:
    """Per-chip duty cycle from per-core values: cores are listed chip by chip."""
    if not values or len(values) % groups:
        return [None] * groups
    k = len(values) // groups
    out: list[float | None] = []
    for g in range(groups):
        known = [v for v in values[g * k:(g + 1) * k] if v is not None]
        out.append(sum(known) / k if len(known) == k else None)
    return out


def parse_tpu_info(text: str) -> tuple[DeviceReading, ...]:
    """Readings from one ``tpu-info`` output (any of the layouts in the module docstring)."""
    if not isinstance(text, str):
        raise _fail(f"expected text output, got {type(text).__name__}")
    lines = _clean(text)
    chips: _Table | None = None
    per_chip: _Table | None = None  # HBM usage (and, in the combined table, duty cycle) per chip
    per_core: _Table | None = None  # duty cycle per core (--metric duty_cycle_percent)
    chip_duty: _Table | None = None  # duty cycle per chip (tpu-info 0.5 --metric: "Chip ID")
    for table in _tables(lines):  # later copies (streaming frames) replace earlier ones
        if table.find("type") is not None and table.find("chip", "device") is not None:
            chips = table  # the first release titled the id column "Device"
        elif table.find("hbm usage", "memory usage") is not None:
            per_chip = table
        elif table.find("duty cycle") is not None and table.find("core") is not None:
            per_core = table
        elif table.find("duty cycle") is not None and table.find("chip") is not None:
            chip_duty = table
    if chips is None and per_chip is None:
        raise _fail("no 'TPU Chips' or HBM usage table in the output")

    libtpu = _header_value(lines, "Libtpu version")
    if chips is not None:
        chip_col, type_col = chips.column("chip", "device"), chips.column("type")
        ids = [_device_id(row[chip_col], i) for i, row in enumerate(chips.rows)]
        models = [re.sub(r"\s+chip$", "", row[type_col], flags=re.IGNORECASE) for row in chips.rows]
    else:
        assert per_chip is not None  # checked above
        id_col = per_chip.column("chip", "device")
        ids = [row[id_col] for row in per_chip.rows]
        models = [f"TPU {_header_value(lines, 'Accelerator type')}".strip()] * len(ids)
    if not ids:
        raise _fail("the chip table lists no chips")
    if len(set(ids)) != len(ids) or not all(ids):
        raise _fail(f"duplicate or empty chip ids {ids!r}")

    n = len(ids)
    used: list[int | None] = [None] * n
    total: list[int | None] = [None] * n
    duty: list[float | None] = [None] * n
    if per_chip is not None:
        mem_col, duty_col = per_chip.column("hbm usage", "memory usage"), per_chip.find("duty cycle")
        for i, row in enumerate(_match_rows(per_chip, ids)):
            if row is None:
                continue
            used[i], total[i] = _memory(row[mem_col])
            if duty_col is not None:
                duty[i] = _ratio(row[duty_col])
    if chip_duty is not None and all(d is None for d in duty):
        col = chip_duty.column("duty cycle")
        duty = [None if row is None else _ratio(row[col]) for row in _match_rows(chip_duty, ids)]
    if per_core is not None and all(d is None for d in duty):
        col = per_core.column("duty cycle")
        duty = _group_mean([_ratio(row[col]) for row in per_core.rows], n)

    return tuple(
        DeviceReading(
            info=DeviceInfo(device=ids[i], vendor=VENDOR, model=models[i], runtime_version=libtpu),
            up=True,
            utilization_ratio=duty[i],
            memory_used_bytes=used[i],
            memory_total_bytes=total[i],
        )
        for i in range(n)
    )


def _match_rows(table: _Table, ids: list[str]) -> list[tuple[str, ...] | None]:
    """Rows of a per-chip table in the order of ``ids``.

    The runtime table numbers chips by libtpu device id, which on a multi-host slice is global
    (``8, 9, 12, 13`` on a host whose chips are ``/dev/vfio/0..3``); tpu-info lists both tables in
    the same chip order, so rows pair by position when the counts agree, else by id.
    """
    if len(table.rows) == len(ids):
        return list(table.rows)
    col = table.column("chip", "device")
    by_id = {row[col]: row for row in table.rows}
    return [by_id.get(device) for device in ids]


# Legacy TPU VMs (v2-v4) have flat /dev/accelN nodes; Gaudi uses the /dev/accel/ directory.
DETECTION = Detection(device_globs=("/dev/accel[0-9]*",), tools=(TOOL,))


def detect() -> bool:
    """A TPU host: ``tpu-info`` installed, legacy ``/dev/accelN`` nodes, or a Google PCI function
    (v5e and later are vfio-bound, and ``/dev/vfio`` alone is not TPU-specific)."""
    return DETECTION.present() or _has_pci_vendor(_GOOGLE_PCI_VENDOR)


def _has_pci_vendor(vendor: str) -> bool:
    """True when a PCI function of ``vendor`` (``0x1ae0``) is on the host (``host_root()``)."""
    pattern = os.path.join(host_root(), "sys/bus/pci/devices/*/vendor")
    for path in glob.glob(pattern):
        try:
            with open(path, encoding="ascii") as f:
                if f.read().strip().lower() == vendor:
                    return True
        except (OSError, UnicodeDecodeError):
            continue
    return False


@register("tpu", options=ToolOptions, detection=DETECTION, detect=detect)
class TpuBackend(ToolBackend):
    """Runs ``tpu-info`` (one-shot, not ``--streaming``) on every sample."""

    name = "tpu"

    def _read(self) -> tuple[DeviceReading, ...]:
        tool = resolve_tool(self._tool_path or TOOL)
        return parse_tpu_info(run_tool([tool], timeout=self.timeout))


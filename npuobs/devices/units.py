"""Reading vendor output: the strings tools print ("18109794uW", "35 W", "15.7GiB", "40.98°C",
"[N/A]") as numbers in the schema's base units (watts, bytes, celsius, hertz, ratio), the
box-drawn tables SMI tools print, and Prometheus text from vendor exporters.

Every SMI tool has its own idea of how to write "not available" (``N/A``, ``[N/A]``, ``-``,
``[Not Supported]``, DCGM's out-of-range blank sentinels ...). All of them map to ``None`` here,
never to 0: the schema's rule is that an unknown value is an absent metric, not a fake zero.
A value that is present but unparsable raises ``BackendError``: silently dropping it would hide
a format change in a new tool version. Callers usually re-raise with the tool's name prepended.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from npuobs.devices.base import BackendError, DeviceReading

# Literal "no value" spellings seen in nvidia-smi, rbln-stat, furiosa-smi, hl-smi, amd-smi,
# neuron-ls and tpu-info output (compared case-insensitively, surrounding brackets removed).
_ABSENT = frozenset({
    "", "-", "--", "n/a", "na", "none", "null", "not supported", "unknown", "unknown error",
    "requested functionality has been deprecated", "insufficient permissions", "not available",
    "gpu is lost",
})

# DCGM "blank" sentinels (dcgm_structs.h): a field DCGM could not read is reported as one of
# these values instead of being omitted (e.g. DCGM_FI_DEV_MEMORY_TEMP = 9223372036854775794).
DCGM_INT64_BLANK = 0x7FFFFFFFFFFFFFF0
DCGM_FP64_BLANK = 140737488355328.0  # 2**47
_DCGM_BLANK_SPAN = 16  # BLANK, NOT_FOUND, NOT_SUPPORTED, NOT_PERMISSIONED and reserved values

_NUMBER = re.compile(
    r"""^\s*\(?\s*
        (?P<num>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
        \s*(?P<unit>[^\d\s()][^()]*?)?
        \s*\)?\s*$""",
    re.VERBOSE | re.ASCII,
)
_PCI_ID = re.compile(r"0[xX][0-9a-fA-F]{1,8}")
# Longer digit strings are garbage, not readings (and int() refuses beyond 4300 digits).
_MAX_DIGITS = 40

WATTS: Mapping[str, float] = {"uw": 1e-6, "µw": 1e-6, "mw": 1e-3, "w": 1.0, "kw": 1e3}
BYTES: Mapping[str, int] = {
    "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
    # SI prefixes are decimal; tools that mean MiB write MiB (nvidia-smi, hl-smi, furiosa-smi).
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
}
HERTZ: Mapping[str, float] = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
CELSIUS: Mapping[str, float] = {"c": 1.0, "°c": 1.0, "degc": 1.0, "℃": 1.0}
PERCENT: Mapping[str, float] = {"%": 0.01}


def is_absent(text: object) -> bool:
    """True for every "no value" spelling (``N/A``, ``[N/A]``, ``-``, ``None``, empty ...)."""
    if text is None:
        return True
    if not isinstance(text, str):
        return False
    word = text.strip().strip("[]").strip().lower()
    if word in _ABSENT:
        return True
    # "N/A (Secondary die)" (rocm-smi 6.0 on the second die of a dual-die card): a no-value
    # spelling followed by the tool's reason in parentheses
    head, sep, _ = word.partition("(")
    return bool(sep) and head.strip() in _ABSENT - {""}


def is_pci_id(text: str) -> bool:
    """True for a bare PCI vendor/device id (``0x1002``, ``0x73df``): an identifier, not a name.

    Older ``rocm-smi --json`` puts these in its "Card series"/"Card model" fields; reporting them
    as the model would label a fleet's GPUs ``0x1002``.
    """
    return bool(_PCI_ID.fullmatch(text.strip()))


def is_dcgm_blank(value: float) -> bool:
    """True when ``value`` is one of DCGM's int64 or fp64 blank sentinels.

    The int32 sentinels (0x7ffffff0 and up) are not treated as blank: a 64-bit counter (energy
    in mJ) legitimately passes through that range.
    """
    # <= 2**63: a sentinel that went through a float (JSON, Prometheus text) rounds up to 2**63.
    return (DCGM_INT64_BLANK <= value <= 1 << 63
            or DCGM_FP64_BLANK <= value < DCGM_FP64_BLANK + _DCGM_BLANK_SPAN)


def split_quantity(text: str) -> tuple[float, str] | None:
    """``"35.5 W"`` -> ``(35.5, "w")``; ``None`` when absent. The unit comes back lower-cased.

    Accepts an optional pair of parentheses around the whole value (rocm-smi's ``"(1402Mhz)"``).
    Raises ``BackendError`` for anything that is not "number, optional unit".
    """
    if is_absent(text):
        return None
    if not isinstance(text, str):
        raise BackendError(f"expected a string value, got {type(text).__name__} {text!r}")
    m = _NUMBER.match(text)
    if m is None:
        raise BackendError(f"cannot parse {text!r} as a number")
    num = m.group("num")
    if len(num) > _MAX_DIGITS:
        raise BackendError(f"cannot parse {text[:50]!r}... as a number: too many digits")
    # Integers stay exact: DCGM's int64 sentinels differ only in their last digits.
    value: float = int(num) if num.lstrip("+-").isdigit() else float(num)
    if not math.isfinite(value):
        raise BackendError(f"cannot parse {text!r} as a finite number")
    return value, (m.group("unit") or "").strip().lower()


def parse_number(text: str | float | None) -> float | None:
    """A bare number (int/float/str, no unit); ``None`` for "no value" and DCGM blanks."""
    if isinstance(text, bool):
        raise BackendError(f"expected a number, got boolean {text!r}")
    if isinstance(text, (int, float)):
        value = float(text)
        if not math.isfinite(value):
            raise BackendError(f"expected a finite number, got {text!r}")
    else:
        q = split_quantity(text)  # type: ignore[arg-type]
        if q is None:
            return None
        value, unit = q
        if unit:
            raise BackendError(f"expected a bare number, got {text!r}")
    return None if is_dcgm_blank(value) else value


def parse_int(text: str | int | None) -> int | None:
    """An integer, decimal or ``0x`` hex (nvidia-smi's ``clocks_event_reasons.active``)."""
    if isinstance(text, bool):
        raise BackendError(f"expected an integer, got boolean {text!r}")
    if isinstance(text, int):
        return None if is_dcgm_blank(text) else text
    if is_absent(text):
        return None
    if not isinstance(text, str):
        raise BackendError(f"expected an integer, got {type(text).__name__} {text!r}")
    s = text.strip()
    if len(s) > _MAX_DIGITS or not s.isascii():
        raise BackendError(f"cannot parse {text[:50]!r} as an integer")
    try:
        value = int(s, 16) if s.lower().startswith("0x") else int(s, 10)
    except ValueError:
        raise BackendError(f"cannot parse {text!r} as an integer") from None
    return None if is_dcgm_blank(value) else value


def convert(text: str | float | None, units: Mapping[str, float], default_unit: str, what: str
            ) -> float | None:
    """``text`` in one of ``units`` (name -> factor to the base unit); a bare number is taken to be
    in ``default_unit``. ``None`` for "no value"; ``BackendError`` for unknown units, garbage, or a
    value that overflows once converted (``"1e308 kW"``)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = parse_number(text)
        factor: float | None = units[default_unit.lower()]
    else:
        if text is not None and not isinstance(text, str):
            raise BackendError(f"expected a {what} value, got {type(text).__name__} {text!r}")
        q = split_quantity(text)  # type: ignore[arg-type]
        if q is None:
            return None
        value, unit = q
        if is_dcgm_blank(value):
            return None
        factor = units.get(unit or default_unit.lower())
        if factor is None:
            raise BackendError(f"unknown {what} unit in {text!r}")
    if value is None:
        return None
    result = value * factor
    if not math.isfinite(result):
        raise BackendError(f"{what} {text!r} is out of range")
    return result


def to_watts(text: str | float | None, default_unit: str = "W") -> float | None:
    """``"18109794uW"`` -> 18.109794, ``"35 W"`` -> 35.0, ``"N/A"`` -> None."""
    return convert(text, WATTS, default_unit, "power")


def to_bytes(text: str | float | None, default_unit: str = "B") -> int | None:
    """``"1024 MiB"`` -> 1073741824, ``"15.7GiB"`` -> 16857746637; SI prefixes are decimal.

    A negative size is an error: no memory gauge can go below zero.
    """
    value = convert(text, BYTES, default_unit, "memory size")
    if value is not None and value < 0:
        raise BackendError(f"negative memory size {text!r}")
    return None if value is None else round(value)


def to_celsius(text: str | float | None) -> float | None:
    """``"52 C"``, ``"40.98°C"``, ``"40 °C"``, ``"29C"`` -> degrees Celsius."""
    return convert(text, CELSIUS, "C", "temperature")


def to_hertz(text: str | float | None, default_unit: str = "Hz") -> float | None:
    """``"1980 MHz"`` -> 1.98e9; also ``"(1402Mhz)"`` as rocm-smi prints it."""
    return convert(text, HERTZ, default_unit, "frequency")


def to_ratio(text: str | float | None, default_unit: str = "%") -> float | None:
    """A percentage (``"45 %"``, ``"0.00%"``, bare ``"45"``) -> a 0..1 ratio.

    Values are not clamped: a reading above 100 % is the tool's to explain, not ours to hide.
    """
    return convert(text, PERCENT, default_unit, "percentage")


def check_unique(readings: Sequence[DeviceReading], what: str) -> tuple[DeviceReading, ...]:
    """``readings`` as a tuple, or ``BackendError`` if two share a device id.

    The id becomes the ``device`` label; two devices under one label would overwrite each other's
    series and hide one of them, which is worse than a visibly failed sample.
    """
    seen: set[str] = set()
    for reading in readings:
        if reading.info.device in seen:
            raise BackendError(f"{what}: device {reading.info.device!r} is listed twice")
        seen.add(reading.info.device)
    return tuple(readings)


# Border and cell-separator characters of the tables SMI tools draw: ASCII (``+---+``, ``|``,
# ``===``) and the Unicode box-drawing sets (light, heavy, double, rounded) that rich/tabulate-style
# tools print (``tpu-info``, newer ``furiosa-smi``, ``rbln-smi``).
_BOX_VERTICAL = "|│┃║┆┇┊┋╎╏"
_BOX_BORDER = set("+-=_:" + _BOX_VERTICAL + "".join(chr(c) for c in range(0x2500, 0x2580)))
_LOGGED_UNKNOWN: set[tuple[str, str]] = set()
log = logging.getLogger(__name__)


def _is_border(line: str) -> bool:
    return bool(line) and set(line) <= _BOX_BORDER and any(c not in _BOX_VERTICAL for c in line)


def _row_cells(line: str) -> list[str] | None:
    if not line or line[0] not in _BOX_VERTICAL:
        return None
    for bar in _BOX_VERTICAL[1:]:
        line = line.replace(bar, "|")
    return [cell.strip() for cell in line.strip("|").split("|")]


def note_unknown_columns(what: str, columns: Iterable[str], known: Iterable[str]) -> None:
    """Log, once per process and at debug level, each column of ``what`` a parser does not read:
    a new tool version's extra column is expected, not an error, but worth finding when mapping it."""
    for name in sorted(set(columns) - set(known) - {""}):
        if (what, name) not in _LOGGED_UNKNOWN:
            _LOGGED_UNKNOWN.add((what, name))
            log.debug("%s: column %r is not read", what, name)


def trim_cell(text: str) -> str:
    """A cell value without the list punctuation older tools leave on it (``Core 0: 0.00%,``)."""
    return text.strip().rstrip(",;").strip()


def parse_box_table(text: str, header: Iterable[str], what: str, *, key: str | None = None,
                    known: Iterable[str] | None = None) -> list[dict[str, list[str]]]:
    """Records of the first bordered table in ``text`` whose header row holds every ``header`` name.

    Columns are found by their header name, never by position, so a tool version that adds,
    drops or reorders columns still parses; a caller treats a column it needs but does not find
    as "this field is absent". Borders may be ASCII (``+---+``, ``|``) or any Unicode
    box-drawing set. A record is everything between two borders, so a multi-line record
    (furiosa-smi ``status`` prints 8 lines per device) comes back as one dict: column name -> the
    non-empty fragments of that column, top to bottom. When ``key`` is given and more than one line
    of one bordered block has a ``key`` cell, the block holds several records (rbln-stat prints
    several devices per block, some tools print no borders between rows): each line with a ``key``
    cell starts a record and the lines without one continue it. Rows are split on the separator
    rather than on the border's column positions because real output is not always aligned
    (furiosa-smi ``ps``). The table ends at the first row whose cell count differs from the
    header's (the next table's title). Columns outside ``known`` are logged once, at debug level.
    Raises ``BackendError`` naming ``what`` when no such header exists.
    """
    wanted = set(header)
    blocks: list[list[list[str]]] = [[]]
    for raw in text.splitlines():
        line = raw.strip()
        if _is_border(line):
            blocks.append([])
            continue
        cells = _row_cells(line)
        if cells is not None:
            blocks[-1].append(cells)
    blocks = [b for b in blocks if b]
    start = next((i for i, b in enumerate(blocks) if wanted <= set(b[0])), None)
    if start is None:
        raise BackendError(f"{what}: no table with columns {', '.join(sorted(wanted))}")
    names = blocks[start][0]
    if known is not None:
        note_unknown_columns(what, names, known)
    # a header block may carry data rows too when the tool prints no rule under the header
    body = [blocks[start][1:]] + blocks[start + 1:]
    records: list[dict[str, list[str]]] = []
    for block in body:
        if not block:
            continue
        if any(len(cells) != len(names) for cells in block):
            break
        groups = [block]
        if key is not None and key in names:
            k = names.index(key)
            if sum(1 for cells in block if cells[k]) > 1:
                groups = []
                for cells in block:
                    if cells[k] or not groups:
                        groups.append([])
                    groups[-1].append(cells)
        for group in groups:
            records.append({name: [cells[c] for cells in group if cells[c]] for c, name in enumerate(names)})
    return records


def prometheus_samples(text: str, what: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition; ``BackendError`` naming ``what`` if malformed.

    Comment lines that are neither ``# HELP`` nor ``# TYPE`` (vendor READMEs use ``#liveness``)
    are ignored by the parser, as Prometheus itself ignores them.
    """
    try:
        return [s for family in text_string_to_metric_families(text) for s in family.samples]
    except Exception as exc:  # the parser documents no exception set; anything it raises is "malformed"
        raise BackendError(f"{what}: malformed Prometheus text: {exc}") from exc

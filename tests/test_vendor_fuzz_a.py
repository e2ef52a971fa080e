"""Property tests for the NVIDIA, FuriosaAI and Rebellions parsers: whatever a tool prints, a parser
returns valid readings or raises ``BackendError``, never any other exception.

Inputs (over 5,000 parser inputs generated; the last test checks the count): random text, the real
fixtures mutated (truncated, lines shuffled/dropped/duplicated, numbers and cells replaced by
garbage, junk lines inserted), XML element texts replaced, and the ``rbln-stat --json`` capture
with random nodes replaced by values of the wrong type. The unit conversions the parsers share
are checked directly too.
"""

from __future__ import annotations

import json
import math
import random
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from fixturepaths import read_fixture
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npuobs.devices import furiosa, nvml, rebellions, units
from npuobs.devices.base import BackendError, DeviceInfo, DeviceReading
from npuobs.schema import ERROR_KINDS, RESET_REASONS, THROTTLE_REASONS

pytestmark = pytest.mark.integration  # long property runs: thousands of generated inputs through the real parsers

Parser = Callable[[str], tuple[DeviceReading, ...]]

_H100_FIELDS = read_fixture("nvidia-h100/h100-query-idle.csv").splitlines()[0].split(", ")

# parser name -> (parser, real inputs it is meant for)
PARSERS: dict[str, tuple[Parser, list[str]]] = {
    "nvidia-smi -q -x": (nvml.parse_smi_xml, [
        read_fixture("nvidia-h100/h100-nvidia-smi-q.xml"),
        read_fixture("vendor/nvidia/nvidia-smi-q-x-tesla-t4-driver515.xml"),
        read_fixture("vendor/nvidia/nvidia-smi-q-x-a100-sxm4-80gb-mig-driver535.xml"),
    ]),
    "nvidia-smi --query-gpu": (nvml.parse_query_csv, [
        read_fixture("nvidia-h100/h100-query-idle.csv"),
        read_fixture("vendor/nvidia/nvidia-smi-query-gpu-tesla-p100.csv"),
        read_fixture("vendor/nvidia/nvidia-smi-query-gpu-l40s-idle-driver595.csv"),
        read_fixture("vendor/nvidia/nvidia-smi-query-gpu-h200-mig-load-driver590.csv"),
    ]),
    "nvidia-smi --query-gpu noheader": (lambda text: nvml.parse_query_csv(text, _H100_FIELDS), [
        read_fixture("nvidia-h100/h100-query-after.csv"),
        read_fixture("nvidia-h100/h100-query-load.csv").splitlines(keepends=True)[-1],
    ]),
    "furiosa-smi info": (furiosa.parse_info, [
        read_fixture("vendor/furiosa/furiosa-smi-info-4x-rngd-fw1.7.0.txt"),
        read_fixture("vendor/furiosa/furiosa-smi-info-format-full-4x-rngd-fw1.7.0.txt"),
    ]),
    "furiosa-smi status": (furiosa.parse_status, [
        read_fixture("vendor/furiosa/furiosa-smi-status-4x-rngd.txt"),
    ]),
    "furiosa-metrics-exporter": (furiosa.parse_exporter_metrics, [
        read_fixture("vendor/furiosa/furiosa-metrics-exporter-metrics-rngd-sample.prom"),
        read_fixture("vendor/furiosa/furiosa-metrics-exporter-metrics-rngd-partitioned-sample.prom"),
    ]),
    "rbln-stat --json": (rebellions.parse_stat_json, [
        read_fixture("vendor/rebellions/rbln-stat-json-8x-rbln-ca22-loaded.json"),
    ]),
    "rbln-stat": (rebellions.parse_stat_table, [
        read_fixture("vendor/rebellions/rbln-stat-table-1x-rbln-ca12.txt"),
    ]),
    "rbln-metrics-exporter": (rebellions.parse_exporter_metrics, [
        read_fixture("vendor/rebellions/rbln-metrics-exporter-metrics-sample.prom"),
    ]),
}
SEEDS = [(name, text) for name, (_, texts) in PARSERS.items() for text in texts]
RUNS: Counter[str] = Counter()

_FLOAT_FIELDS = ("temperature_celsius", "temperature_throttle_threshold_celsius", "power_watts",
                 "power_limit_watts", "energy_joules_total", "utilization_ratio", "clock_hertz",
                 "clock_max_hertz")
_GARBAGE = st.sampled_from([
    "", "-", "N/A", "[N/A]", "nan", "NaN", "inf", "-inf", "1e999", "-5", "0x", "0xZZ", "1.2.3", "９",
    "²", "abc", "99999999999999999999999999999999999999999999", "1" * 5000, "-0", " ", "|", ",", "\x00",
    "\u00b0C", "18109794uW", "W", "GiB", "9223372036854775794", "\"", "{", "<", "&amp;", "1 / 2",
]) | st.text(max_size=8)
_BASE = settings(deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fuzz(examples: int) -> settings:
    """Settings for one fuzz test: no deadline (XML seeds are large), no example database."""
    return settings(_BASE, max_examples=examples)


def _valid(reading: DeviceReading) -> None:
    assert isinstance(reading, DeviceReading)
    assert isinstance(reading.info, DeviceInfo)
    for value in vars(reading.info).values():
        assert isinstance(value, str)
    assert reading.info.device
    assert isinstance(reading.up, bool)
    assert reading.healthy in (None, True, False)
    assert reading.throttled in (None, True, False)
    for name in _FLOAT_FIELDS:
        value = getattr(reading, name)
        assert value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                 and math.isfinite(value)), (name, value)
    for name in ("memory_used_bytes", "memory_total_bytes", "oom_events_total"):
        value = getattr(reading, name)
        assert value is None or (type(value) is int and value >= 0), (name, value)
    assert set(reading.throttle_reasons) <= set(THROTTLE_REASONS)
    assert all(isinstance(v, bool) for v in reading.throttle_reasons.values())
    assert set(reading.errors_total) <= set(ERROR_KINDS)
    assert set(reading.resets_total) <= set(RESET_REASONS)
    for counts in (reading.errors_total, reading.resets_total):
        assert all(type(n) is int and n >= 0 for n in counts.values())


def check(name: str, text: str) -> None:
    """Run parser ``name`` on ``text``: BackendError or valid, uniquely identified readings."""
    RUNS[name] += 1
    parser = PARSERS[name][0]
    try:
        readings = parser(text)
    except BackendError as exc:
        assert str(exc)
        return
    assert isinstance(readings, tuple) and readings
    ids = [r.info.device for r in readings]
    assert len(ids) == len(set(ids)), ids
    for reading in readings:
        _valid(reading)


@pytest.mark.parametrize("convert, text, expected", [
    (units.to_watts, "18109794uW", 18.109794),
    (units.to_watts, "35 W", 35.0),
    (units.to_watts, "38.40 W", 38.4),
    (units.to_watts, "119100", 119100.0),
    (units.to_bytes, "1024 MiB", 1 << 30),
    (units.to_bytes, "80 GiB", 80 << 30),
    (units.to_bytes, "0.0B", 0),
    (units.to_bytes, "16877879296", 16877879296),
    (units.to_celsius, "52 C", 52.0),
    (units.to_celsius, "40.98°C", 40.98),
    (units.to_celsius, "40 °C", 40.0),
    (units.to_hertz, "1980 MHz", 1.98e9),
    (units.to_hertz, "(1402Mhz)", 1.402e9),
    (units.to_ratio, "45 %", 0.45),
    (units.to_celsius, "N/A", None),
    (units.to_watts, "[N/A]", None),
    (units.to_ratio, "-", None),
    (units.to_hertz, "[Requested functionality has been deprecated]", None),
    (units.to_bytes, "", None),
    (units.parse_number, "9223372036854775794", None),  # DCGM int64 NOT_SUPPORTED sentinel
    (units.parse_number, "140737488355328.0", None),  # DCGM fp64 blank
    (units.parse_int, "0x0000000000000004", 4),
])
def test_unit_conversions(convert: Callable[[str], Any], text: str, expected: Any) -> None:
    assert convert(text) == (pytest.approx(expected) if isinstance(expected, float) else expected)


@pytest.mark.parametrize("convert, text", [
    (units.to_watts, "35 Q"), (units.to_bytes, "-1 MiB"), (units.to_celsius, "hot"),
    (units.parse_number, "35 W"), (units.parse_int, "4.5"), (units.to_hertz, "1e999 MHz"),
    (units.to_watts, "1e308 kW"), (units.parse_number, "1" * 41),
])
def test_unit_garbage(convert: Callable[[str], Any], text: str) -> None:
    with pytest.raises(BackendError):
        convert(text)


@fuzz(400)
@given(text=st.text(max_size=30) | _GARBAGE)
def test_unit_conversions_never_crash(text: str) -> None:
    for convert in (units.to_watts, units.to_bytes, units.to_celsius, units.to_hertz, units.to_ratio,
                    units.parse_number, units.parse_int):
        try:
            value = convert(text)
        except BackendError:
            continue
        assert value is None or (not isinstance(value, bool) and math.isfinite(value))


def test_every_seed_parses() -> None:
    for name, text in SEEDS:
        check(name, text)
        assert PARSERS[name][0](text)


@fuzz(700)
@given(name=st.sampled_from(sorted(PARSERS)), text=st.text(max_size=400))
def test_random_text(name: str, text: str) -> None:
    check(name, text)


@fuzz(500)
@given(seed=st.sampled_from(SEEDS), cut=st.floats(0, 1))
def test_truncated(seed: tuple[str, str], cut: float) -> None:
    name, text = seed
    check(name, text[: int(len(text) * cut)])


@fuzz(700)
@given(seed=st.sampled_from(SEEDS), rnd=st.randoms(use_true_random=False))
def test_lines_shuffled_dropped_duplicated(seed: tuple[str, str], rnd: random.Random) -> None:
    name, text = seed
    lines = text.splitlines(keepends=True)
    action = rnd.choice(("shuffle", "drop", "duplicate", "swap"))
    if action == "shuffle":
        rnd.shuffle(lines)
    elif action == "drop":
        lines = [line for line in lines if rnd.random() > 0.2]
    elif action == "duplicate" and lines:
        i = rnd.randrange(len(lines))
        lines.insert(i, lines[i])
    elif len(lines) > 1:
        i, j = rnd.randrange(len(lines)), rnd.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    check(name, "".join(lines))


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@fuzz(1000)
@given(seed=st.sampled_from(SEEDS), rnd=st.randoms(use_true_random=False),
       garbage=st.lists(_GARBAGE, min_size=1, max_size=6))
def test_numbers_replaced_by_garbage(seed: tuple[str, str], rnd: random.Random, garbage: list[str]) -> None:
    name, text = seed
    spans = [m.span() for m in _NUMBER.finditer(text)]
    chosen = sorted(rnd.sample(spans, min(len(garbage), len(spans))), reverse=True)
    for (start, end), junk in zip(chosen, garbage, strict=False):
        text = text[:start] + junk + text[end:]
    check(name, text)


_CELL = re.compile(r"(?<=[|,])[^|,\n]*(?=[|,\n])")


@fuzz(600)
@given(seed=st.sampled_from([s for s in SEEDS if s[0] not in ("nvidia-smi -q -x", "rbln-stat --json")]),
       rnd=st.randoms(use_true_random=False), garbage=st.lists(_GARBAGE, min_size=1, max_size=4))
def test_table_cells_replaced(seed: tuple[str, str], rnd: random.Random, garbage: list[str]) -> None:
    name, text = seed
    spans = [m.span() for m in _CELL.finditer(text)]
    chosen = sorted(rnd.sample(spans, min(len(garbage), len(spans))), reverse=True)
    for (start, end), junk in zip(chosen, garbage, strict=False):
        text = text[:start] + junk + text[end:]
    check(name, text)


@fuzz(400)
@given(seed=st.sampled_from(SEEDS), rnd=st.randoms(use_true_random=False),
       junk=st.lists(st.text(max_size=60) | _GARBAGE, min_size=1, max_size=4))
def test_junk_lines_inserted(seed: tuple[str, str], rnd: random.Random, junk: list[str]) -> None:
    name, text = seed
    lines = text.splitlines(keepends=True)
    for line in junk:
        lines.insert(rnd.randrange(len(lines) + 1), line + "\n")
    check(name, "".join(lines))


@fuzz(500)
@given(which=st.integers(0, 2), rnd=st.randoms(use_true_random=False),
       garbage=st.lists(_GARBAGE, min_size=1, max_size=8), delete=st.booleans())
def test_xml_element_texts(which: int, rnd: random.Random, garbage: list[str], delete: bool) -> None:
    text = PARSERS["nvidia-smi -q -x"][1][which]
    root = ET.fromstring(text)
    elements = [e for e in root.iter() if e is not root]
    for junk in garbage:
        elem = rnd.choice(elements)
        elem.text = "".join(c for c in junk if c.isprintable() and c != "\x00")
    if delete:
        parent = rnd.choice([e for e in root.iter() if len(e)])
        parent.remove(rnd.choice(list(parent)))
    check("nvidia-smi -q -x", ET.tostring(root, encoding="unicode"))


_JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10) | _GARBAGE,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*path, i))
    return found


@fuzz(1000)
@given(rnd=st.randoms(use_true_random=False), values=st.lists(_JSON_VALUE, min_size=1, max_size=4))
def test_rbln_json_wrong_types(rnd: random.Random, values: list[Any]) -> None:
    doc = json.loads(PARSERS["rbln-stat --json"][1][0])
    for value in values:
        path = rnd.choice(_paths(doc))
        if not path:
            doc = value
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = value
    check("rbln-stat --json", json.dumps(doc))


def test_volume() -> None:
    """Runs last: the fuzz tests above generated more than 5,000 inputs, across every parser."""
    assert sum(RUNS.values()) > 5000, RUNS
    assert set(RUNS) == set(PARSERS)

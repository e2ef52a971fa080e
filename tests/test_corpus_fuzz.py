"""Hypothesis over every parser's real samples from tests/corpus: each corpus sample, mutated the
ways real output goes wrong (cut short, lines dropped/duplicated/swapped, numbers and words swapped
for other spellings, borders redrawn with other box characters, bytes flipped), must parse into
valid readings or raise ``BackendError``, never any other exception."""

from __future__ import annotations

import math
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_corpus import PARSERS, expectation_files, sample_path

from npuobs.devices.base import BackendError, DeviceReading

pytestmark = pytest.mark.integration  # a long property search (like the vendor fuzz modules): out of the unit loop


def _seeds() -> list[tuple[str, str, str]]:
    """(expectation file, parser name, sample text) for every corpus sample."""
    seeds = []
    for path in expectation_files():
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        seeds.append((path.name, spec["parser"], sample_path(spec["sample"]).read_text(encoding="utf-8")))
    return seeds


SEEDS = _seeds()
GARBAGE = ["", "-", "N/A", "[N/A]", "N/A (Secondary die)", "0x1002", "nan", "inf", "-1", "1e999",
           "99999999999999999999", "12,", "Core 0: 0.00%,", "┃", "│", "╋", "|", "+", "<", "&", "\x00", "é",
           "   ", "0 MiB", "7 W /", "...", '"', "{", "]", "null", "true"]
BORDERS = str.maketrans({"+": "┼", "-": "─", "|": "│", "=": "═"})
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, str]:
    name, parser, text = draw(st.sampled_from(SEEDS))
    lines = text.splitlines(keepends=True)
    kind = draw(st.sampled_from(["truncate", "drop", "duplicate", "swap", "number", "word", "borders", "flip"]))
    if kind == "truncate":
        text = text[:draw(st.integers(0, len(text)))]
    elif kind in ("drop", "duplicate", "swap") and lines:
        i = draw(st.integers(0, len(lines) - 1))
        j = draw(st.integers(0, len(lines) - 1))
        if kind == "drop":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(j, lines[i])
        else:
            lines[i], lines[j] = lines[j], lines[i]
        text = "".join(lines)
    elif kind == "number":
        spans = [m.span() for m in _NUMBER.finditer(text)]
        for start, end in sorted(draw(st.lists(st.sampled_from(spans), max_size=5, unique=True)) if spans else [],
                                 reverse=True):
            text = text[:start] + draw(st.sampled_from(GARBAGE)) + text[end:]
    elif kind == "word":
        words = sorted({w for w in re.findall(r"[A-Za-z_][\w.]*", text)})
        if words:
            text = text.replace(draw(st.sampled_from(words)), draw(st.sampled_from(GARBAGE)))
    elif kind == "borders":
        text = text.translate(BORDERS)
    elif text:
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + draw(st.sampled_from(GARBAGE + ["\n", "\t", "\r"])) + text[i + 1:]
    return name, parser, text


def _check(reading: DeviceReading) -> None:
    assert reading.info.device
    for value in (reading.temperature_celsius, reading.power_watts, reading.utilization_ratio, reading.clock_hertz,
                  reading.power_limit_watts, reading.energy_joules_total):
        assert value is None or (isinstance(value, float | int) and math.isfinite(value))
    for value in (reading.memory_used_bytes, reading.memory_total_bytes):
        assert value is None or (isinstance(value, int) and value >= 0)
    assert all(isinstance(n, int) and n >= 0 for n in reading.errors_total.values())


def test_every_seed_is_a_corpus_sample() -> None:
    assert len(SEEDS) >= 80 and {parser for _, parser, _ in SEEDS} <= set(PARSERS)


@settings(max_examples=600, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_corpus_samples_parse_or_raise_backend_error(case: tuple[str, str, str]) -> None:
    _, parser, text = case
    try:
        readings = PARSERS[parser](text)
    except BackendError:
        return
    for reading in readings:
        _check(reading)

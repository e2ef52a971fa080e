"""Every real, published vendor-tool sample in tests/corpus (and the shared fixtures) against its
hand-written expectations: one ``<sample>.expect.yaml`` per sample, sources in
tests/corpus/SOURCES.md.

An expectation names the parser, the number of devices, and for some devices the values a person
read off the sample (in base units; ``"80 MiB"`` / ``"1980 MHz"`` are written the way the tool
prints them and converted here with fixed factors, independently of ``npuobs.devices.units``).
``null`` means the value must be absent: the tool version does not provide it (the support
matrix in docs/backends.md lists these). ``error`` instead of ``devices`` means the sample must be
rejected with a ``BackendError`` matching that text, never any other exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixturepaths import FIXTURES

from npuobs.devices import amd, furiosa, gaudi, neuron, nvml, rebellions, tpu
from npuobs.devices.base import BackendError, DeviceReading

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).parent / "corpus"

PARSERS: dict[str, Callable[[str], tuple[DeviceReading, ...]]] = {
    "nvml.xml": nvml.parse_smi_xml,
    "nvml.csv": nvml.parse_query_csv,
    "nvml.csv-noheader": lambda text: nvml.parse_query_csv(text, nvml_fields_of_h100_captures()),
    "amd.rocm-smi": amd.parse_rocm_smi_json,
    "amd.amd-smi-monitor": amd.parse_monitor,
    "amd.amd-smi-metric": amd.parse_metric_json,
    "furiosa.info": furiosa.parse_info,
    "furiosa.status": furiosa.parse_status,
    "furiosa.exporter": furiosa.parse_exporter_metrics,
    "rebellions.json": rebellions.parse_stat_json,
    "rebellions.table": rebellions.parse_stat_table,
    "rebellions.exporter": rebellions.parse_exporter_metrics,
    "neuron.ls": neuron.parse_neuron_ls,
    "neuron.monitor": neuron.parse_monitor_report,
    "neuron.prometheus": neuron.parse_monitor_prometheus,
    "gaudi.table": gaudi.parse_table,
    "tpu.info": tpu.parse_tpu_info,
}

_FACTORS = {"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "hz": 1, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
_INFO_FIELDS = ("model", "uuid", "driver_version", "firmware_version", "runtime_version", "parent")


def nvml_fields_of_h100_captures() -> list[str]:
    """The headerless H100 load/after captures used the field list of the idle capture's header."""
    header = (FIXTURES / "nvidia-h100/h100-query-idle.csv").read_text(encoding="utf-8").splitlines()[0]
    return [name.split(" [")[0].strip() for name in header.split(",")]


def expectation_files() -> list[Path]:
    return sorted(CORPUS.rglob("*.expect.yaml"))


def sample_path(name: str) -> Path:
    return FIXTURES / name.removeprefix("shared:") if name.startswith("shared:") else CORPUS / name


def expected_value(value: Any) -> Any:
    """``"8192 MiB"`` -> 8589934592, ``"1980 MHz"`` -> 1.98e9; anything else as written."""
    if isinstance(value, str):
        m = re.fullmatch(r"([0-9.]+) ([A-Za-z]+)", value)
        if m and m.group(2).lower() in _FACTORS:
            result = float(m.group(1)) * _FACTORS[m.group(2).lower()]
            return round(result) if m.group(2).lower().endswith("b") else result
    return value


def actual_value(reading: DeviceReading, key: str) -> Any:
    if key in _INFO_FIELDS:
        return getattr(reading.info, key)
    if key.startswith("errors."):
        return reading.errors_total.get(key.removeprefix("errors."))
    if key.startswith("resets."):
        return reading.resets_total.get(key.removeprefix("resets."))
    if not hasattr(reading, key):
        raise AssertionError(f"expectation names unknown field {key!r}")
    return getattr(reading, key)


def test_corpus_holds_at_least_80_real_samples() -> None:
    samples = {yaml.safe_load(p.read_text(encoding="utf-8"))["sample"] for p in expectation_files()}
    assert len(samples) >= 80, f"{len(samples)} samples"
    sources = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    for name in samples:
        assert sample_path(name).is_file(), name
        if not name.startswith("shared:"):
            assert f"`{name}`" in sources, f"{name} has no entry in tests/corpus/SOURCES.md"


@pytest.mark.parametrize("path", expectation_files(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_sample(path: Path) -> None:
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    parse = PARSERS[spec["parser"]]
    text = sample_path(spec["sample"]).read_text(encoding="utf-8")
    if "error" in spec:
        with pytest.raises(BackendError, match=spec["error"]):
            parse(text)
        return
    readings = parse(text)
    assert len(readings) == spec["devices"]
    by_id = {r.info.device: r for r in readings}
    for device, fields in (spec.get("expect") or {}).items():
        assert device in by_id, f"device {device!r} not in {sorted(by_id)}"
        for key, value in fields.items():
            want = expected_value(value)
            got = actual_value(by_id[device], key)
            if isinstance(want, float) and got is not None:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-9), f"device {device} {key}"
            else:
                assert got == want, f"device {device} {key}: {got!r} != {want!r}"

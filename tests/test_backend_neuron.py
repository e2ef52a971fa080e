"""Neuron backend: the real neuron-monitor record and neuron-ls output, AWS's documented report
structure (doc fragments, cleaned up here only), the Prometheus companion's exposition, and the
streaming backend against fake ``neuron-monitor`` / ``neuron-ls`` processes."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fixturepaths import VENDOR, fake_tool, fixture, read_fixture

from npuobs.devices import registry
from npuobs.devices.base import BackendError
from npuobs.devices.neuron import (
    NeuronBackend,
    detect,
    parse_monitor_prometheus,
    parse_monitor_report,
    parse_neuron_ls,
)

DOC = VENDOR / "aws-neuron" / "neuron-monitor-doc"
RECORD = "vendor/aws-neuron/neuron-monitor-record-trn1-2xlarge-no-runtime.json"


def load_doc_fragment(name: str) -> dict[str, Any]:
    """A ``.jsonfrag`` from the Neuron docs as JSON, after a tolerant clean-up.

    The fragments are illustrations, not valid JSON: ``//`` comments, ``...``/``[...]``
    elisions, missing commas, trailing commas, a ``"key", "value"`` typo and an unclosed object
    (memory_used). This belongs to the tests only: the parser never sees anything but real JSON.
    """
    lines = [re.sub(r"//.*$", "", line) for line in (DOC / name).read_text().splitlines()]
    body = "\n".join(line for line in lines if line.strip() not in ("...", "[...]")).strip().rstrip(",")
    body = re.sub(r'("\w+")\s*,\s*("[^"]*")\s*,', r"\1: \2,", body)
    body = re.sub(r'([}\]"\d]|true|false|null)(\s*\n\s*")', r"\1,\2", body)
    body = re.sub(r",(\s*[}\]])", r"\1", body)
    doc = body if body.startswith("{") else "{" + body + "}"
    closers, in_string = [], False
    for ch in doc:
        if ch == '"':
            in_string = not in_string
        elif not in_string and ch in "{[":
            closers.append("}" if ch == "{" else "]")
        elif not in_string and ch in "}]":
            closers.pop()
    return json.loads(doc + "".join(reversed(closers)))


def documented_report() -> dict[str, Any]:
    """The documented report skeleton filled with the documented metric groups."""
    report = load_doc_fragment("report-structure.jsonfrag")
    runtime = report["neuron_runtime_data"][0]["report"]
    for group in ("neuroncore_counters", "execution_stats", "memory_used", "neuron_runtime_vcpu_usage"):
        runtime.update(load_doc_fragment(f"{group}.jsonfrag"))
    for group in ("neuron_hw_counters", "vcpu_usage", "memory_info"):
        report["system_data"].update(load_doc_fragment(f"{group}.jsonfrag"))
    for group in ("instance_info", "neuron_hardware_info", "neuron_k8s_info"):
        report.update(load_doc_fragment(f"{group}.jsonfrag"))
    return report


def test_real_record_without_runtime() -> None:
    (r,) = parse_monitor_report(read_fixture(RECORD))
    assert r.info.device == "0" and r.info.vendor == "aws" and r.info.model == "trainium v2"
    assert r.up is True
    assert r.memory_total_bytes == 34359738368  # neuron_device_memory_size, 32 GiB
    # no runtime attached: neuron-monitor reports no utilization or memory use, so neither do we
    assert r.utilization_ratio is None and r.memory_used_bytes is None
    assert dict(r.errors_total) == {}  # no neuron_hw_counters group in this record
    assert r.temperature_celsius is None and r.power_watts is None


def test_documented_structure_maps_to_the_schema() -> None:
    readings = parse_monitor_report(json.dumps(documented_report()))
    assert len(readings) == 16  # neuron_device_count of the trn2n.48xlarge example
    r0, r1 = readings[0], readings[1]
    assert r0.info.model == "trainium2 v4" and r0.memory_total_bytes == 103079215104
    # cores 0 and 1 (42.01 % and 42.02 %) of the 4 per device; the other two are idle
    assert r0.utilization_ratio == pytest.approx((0.4201 + 0.4202) / 4)
    # per-core breakdown: constants + model_code + tensors for cores 0 and 1
    assert r0.memory_used_bytes == 2 * (193986816 + 176285056 + 20971520)
    assert dict(r0.errors_total) == {"ecc_corrected": 0, "ecc_uncorrected": 0, "runtime": 0, "timeout": 0}
    assert r1.utilization_ratio is None and r1.memory_used_bytes is None and dict(r1.errors_total) == {}


def test_counters_are_per_period_and_accumulate() -> None:
    report = documented_report()
    report["system_data"]["neuron_hw_counters"]["neuron_devices"][0].update(
        mem_ecc_corrected=2, sram_ecc_corrected=1, mem_ecc_uncorrected=0, sram_ecc_uncorrected=1)
    stats = report["neuron_runtime_data"][0]["report"]["execution_stats"]
    stats["error_summary"]["hardware"] = 3
    stats["execution_summary"]["timed_out"] = 1
    first = parse_monitor_report(json.dumps(report))
    assert dict(first[0].errors_total) == {
        "ecc_corrected": 3, "ecc_uncorrected": 1, "runtime": 3, "timeout": 1}
    quiet = copy.deepcopy(report)
    del quiet["neuron_runtime_data"][0]["report"]["execution_stats"]
    second = parse_monitor_report(json.dumps(report), first)
    third = parse_monitor_report(json.dumps(quiet), second)
    # the quiet report has no execution_stats: runtime/timeout totals carry over unchanged
    assert dict(third[0].errors_total) == {
        "ecc_corrected": 9, "ecc_uncorrected": 3, "runtime": 6, "timeout": 2}


def test_group_with_an_error_says_nothing() -> None:
    report = documented_report()
    report["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["error"] = "collection failed"
    report["neuron_runtime_data"][0]["report"]["memory_used"]["error"] = "collection failed"
    # without core data the runtime is on no known device, so nothing is attributed
    r0 = parse_monitor_report(json.dumps(report))[0]
    assert r0.utilization_ratio is None and r0.memory_used_bytes is None
    assert "runtime" not in r0.errors_total


def test_neuron_ls_trn1() -> None:
    text = read_fixture("vendor/aws-neuron/neuron-ls-json-trn1-2xlarge-no-trailing-newline.json")
    (r,) = parse_neuron_ls(text)
    assert r.info.device == "0" and r.memory_total_bytes == 34359738368
    assert r.info.runtime_version == ""  # no Neuron process attached


def test_neuron_ls_partial_doc_sample_is_rejected() -> None:
    # AWS elided devices 1-14 with "..." in the published sample: not JSON
    with pytest.raises(BackendError, match="neuron-ls"):
        parse_neuron_ls(read_fixture("vendor/aws-neuron/neuron-ls-json-trn2n-48xlarge-doc.txt"))


def test_neuron_ls_runtime_versions_of_attached_processes() -> None:
    text = read_fixture("vendor/aws-neuron/neuron-ls-json-trn2n-48xlarge-doc.txt")
    first_device = text[text.index("[") + 1:text.index("  ...")].strip().rstrip(",")
    (r,) = parse_neuron_ls(f"[{first_device}]")
    assert r.info.device == "0" and r.info.runtime_version == "2.0.0"
    assert r.memory_total_bytes == 103079215104


def test_prometheus_companion_inf1() -> None:
    (r,) = parse_monitor_prometheus(
        read_fixture("vendor/aws-neuron/neuron-monitor-prometheus-metrics-inf1-xlarge-modified-script.prom"))
    assert r.info.device == "0"
    assert r.utilization_ratio == 0.0  # four NeuronCores at 0.0 on the one device
    assert r.memory_used_bytes == 63105088  # runtime 7's neuron_device bytes
    assert dict(r.errors_total) == {"ecc_corrected": 0, "ecc_uncorrected": 0}


def test_prometheus_without_neuron_families_is_rejected() -> None:
    with pytest.raises(BackendError, match="no neuron-monitor metric families"):
        parse_monitor_prometheus("# TYPE process_open_fds gauge\nprocess_open_fds 6.0\n")


@pytest.mark.parametrize("text", [
    "", "{", "[]", '{"neuron_hardware_info": {"neuron_device_count": -1}}',
    '{"neuron_hardware_info": {"neuron_device_count": 100000000000}}',
    '{"neuron_runtime_data": [{"report": {"neuroncore_counters": {"neuroncores_in_use": {"x": {}}}}}]}',
])
def test_garbage_raises_backend_error(text: str) -> None:
    with pytest.raises(BackendError, match="neuron-monitor"):
        parse_monitor_report(text)


def _monitor_script(tmp_path: Path, report: str) -> str:
    """A fake neuron-monitor: checks it got a config file, prints one report line and exits."""
    return fake_tool(tmp_path, "neuron-monitor", (
        "import json, sys\n"
        "config = json.load(open(sys.argv[sys.argv.index('-c') + 1]))\n"
        "assert config['period'] == '1s'\n"
        f"sys.stdout.write({report!r} + '\\n')\n"
        "sys.stdout.flush()\n"))


def test_sample_end_to_end_with_a_fake_monitor(tmp_path: Path) -> None:
    backend = registry.create("neuron", tool_path=_monitor_script(tmp_path, read_fixture(RECORD)),
                              period=1.0, timeout=10.0)
    assert isinstance(backend, NeuronBackend)
    try:
        snap = backend.sample()
        assert snap.backend == "neuron"
        (r,) = snap.devices
        assert r.memory_total_bytes == 34359738368
    finally:
        backend.close()


def test_monitor_restarted_after_exit_and_counters_keep_growing(tmp_path: Path) -> None:
    report = documented_report()
    report["system_data"]["neuron_hw_counters"]["neuron_devices"][0]["mem_ecc_corrected"] = 5
    backend = NeuronBackend(tool_path=_monitor_script(tmp_path, json.dumps(report)), period=1.0, timeout=10.0)
    try:
        first = backend.sample().devices[0].errors_total["ecc_corrected"]
        deadline = time.monotonic() + 10
        while backend._stream is not None and backend._stream.alive() and time.monotonic() < deadline:
            time.sleep(0.01)  # let the one-shot fake exit, so the next sample restarts it
        second = backend.sample().devices[0].errors_total["ecc_corrected"]
    finally:
        backend.close()
    assert (first, second) == (5, 10)


def test_hanging_monitor_fails_quickly(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, "neuron-monitor", "import time; time.sleep(60)\n")
    backend = NeuronBackend(tool_path=tool, timeout=0.5, period=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(BackendError, match="no report within 0.5s"):
            backend.sample()
    finally:
        backend.close()
    assert time.monotonic() - started < 5


def test_discover_runs_neuron_ls(tmp_path: Path) -> None:
    src = fixture("vendor/aws-neuron/neuron-ls-json-trn1-2xlarge-no-trailing-newline.json")
    tool = fake_tool(tmp_path, "neuron-ls", (
        "import sys\n"
        "assert sys.argv[1:] == ['--json-output']\n"
        f"sys.stdout.buffer.write(open({str(src)!r}, 'rb').read())\n"))
    (info,) = NeuronBackend(neuron_ls_path=tool, timeout=10.0).discover()
    assert info.device == "0" and info.vendor == "aws"


def test_detect_on_a_fake_host_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPUOBS_HOST_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert detect() is False
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/neuron0").touch()
    assert detect() is True

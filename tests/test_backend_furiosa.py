"""The FuriosaAI RNGD backend against the published furiosa-smi tables and exporter samples."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from fixturepaths import VENDOR, read_fixture, serving

from npuobs.devices import registry, units
from npuobs.devices.base import BackendError
from npuobs.devices.furiosa import (
    FuriosaBackend,
    merge_readings,
    parse_exporter_metrics,
    parse_info,
    parse_status,
)
from npuobs.devices.toolrun import fetch_url

GIB = 1 << 30
INFO = "vendor/furiosa/furiosa-smi-info-4x-rngd-fw1.7.0.txt"
INFO_FULL = "vendor/furiosa/furiosa-smi-info-format-full-4x-rngd-fw1.7.0.txt"
STATUS = "vendor/furiosa/furiosa-smi-status-4x-rngd.txt"
PS = "vendor/furiosa/furiosa-smi-ps-4x-rngd.txt"
PROM = "vendor/furiosa/furiosa-metrics-exporter-metrics-rngd-sample.prom"
PROM_PARTITIONED = "vendor/furiosa/furiosa-metrics-exporter-metrics-rngd-partitioned-sample.prom"


def test_info_table() -> None:
    readings = parse_info(read_fixture(INFO))
    assert [r.info.device for r in readings] == ["0", "1", "2", "3"]
    assert [r.temperature_celsius for r in readings] == [40.98, 41.34, 40.43, 46.57]
    assert [r.power_watts for r in readings] == [38.40, 37.44, 37.44, 39.36]
    first = readings[0]
    assert first.info.vendor == "furiosa" and first.info.model == "RNGD"
    assert first.info.firmware_version == "1.7.0, 4dfed1852e7b"  # the cell holds a comma
    assert first.info.uuid == "" and first.clock_hertz is None  # only in --format full
    assert first.up is True and first.healthy is None


def test_info_full_table() -> None:
    readings = parse_info(read_fixture(INFO_FULL))
    assert readings[0].info.uuid == "007741DA-70B7-4996-AAC0-7E8E46FFC817"
    assert readings[3].info.uuid == "09512C86-0702-4305-824D-44454143444F"
    assert [r.clock_hertz for r in readings] == [2000e6] * 4  # right-aligned "  2000 MHz"
    assert readings[0].temperature_celsius == 40.80


def test_status_multiline_cells() -> None:
    readings = parse_status(read_fixture(STATUS))
    assert [r.info.device for r in readings] == ["0", "1", "2", "3"]
    for r in readings:
        assert r.up is True and r.healthy is True  # "alive"
        assert r.memory_used_bytes == 0
        assert r.memory_total_bytes == int(47.50 * GIB)
    assert readings[0].utilization_ratio == 0.0  # "Core N: 0.00%"
    assert readings[2].utilization_ratio is None  # "Core N: -": idle, no value -> not 0


def test_info_and_status_merge() -> None:
    merged = merge_readings(parse_info(read_fixture(INFO_FULL)), parse_status(read_fixture(STATUS)))
    first = merged[0]
    assert first.info.uuid == "007741DA-70B7-4996-AAC0-7E8E46FFC817"
    assert first.info.model == "RNGD"
    assert first.temperature_celsius == 40.80 and first.power_watts == 38.40
    assert first.memory_total_bytes == int(47.5 * GIB) and first.healthy is True
    assert first.power_limit_watts is None and first.throttled is None and first.errors_total == {}


def test_a_device_that_is_not_alive_is_down() -> None:
    text = read_fixture(STATUS).replace("| rngd | npu1   | alive   ", "| rngd | npu1   | dead    ", 1)
    readings = parse_status(text)
    assert [(r.up, r.healthy) for r in readings][:2] == [(True, True), (False, False)]
    merged = merge_readings(parse_info(read_fixture(INFO)), readings)
    assert merged[1].up is False and merged[1].temperature_celsius == 41.34


def test_ps_table_with_a_short_row_still_reads() -> None:
    (row,) = units.parse_box_table(read_fixture(PS), ("PID", "NPU core", "CMD"), "furiosa-smi ps")
    assert row["PID"] == ["3283"]
    assert row["NPU core"] == ["npu0:[0, 7], npu1:[0, 7], npu2:[0, 7], npu3:[0, 7]"]


def test_exporter_sample() -> None:
    (npu,) = parse_exporter_metrics(read_fixture(PROM))
    assert npu.info.device == "0"
    assert npu.info.uuid == "09512C86-0702-4303-8F40-474746474A40"
    assert npu.info.driver_version == "2025.1.0+f09a8d8"
    assert npu.info.firmware_version == "2025.1.0+696efad"
    assert npu.info.runtime_version == "2025.1.0+1694e18"  # pert_version
    assert npu.up is True and npu.healthy is True
    assert npu.temperature_celsius == 67.756  # peak sensor; ambient is 52
    assert npu.power_watts == 50.0
    assert npu.utilization_ratio == pytest.approx((4 * 99.68363645361265 + 4 * 99.6826341187199) / 800)
    assert npu.clock_hertz == 1750e6
    assert npu.memory_used_bytes is None  # no dram series in this exporter version


def test_exporter_partitioned_duplicates_collapse() -> None:
    (npu,) = parse_exporter_metrics(read_fixture(PROM_PARTITIONED))
    assert npu.temperature_celsius == 64.41
    assert npu.healthy is None and npu.up is True  # no furiosa_npu_alive series at all


@pytest.mark.parametrize("parser, text, message", [
    (parse_info, "", "no table"),
    (parse_info, read_fixture(INFO).replace("40.98°C", "hot"), "npu0"),
    (parse_info, read_fixture(INFO).replace("npu1", "npu0"), "listed twice"),
    (parse_status, read_fixture(STATUS).replace("0.00/47.50 GiB", "lots of memory", 1), "npu0"),
    (parse_status, read_fixture(STATUS).replace("Core 3: 0.00%", "Core three", 1), "Core N"),
    (parse_exporter_metrics, "furiosa_npu_alive{device=\"npu0\" 1\n", "malformed"),
    (parse_exporter_metrics, "node_load1 1\n", "no furiosa_npu_"),
])
def test_garbage(parser: object, text: str, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        parser(text)  # type: ignore[operator]


def test_backend_runs_furiosa_smi(tmp_path: Path) -> None:
    tool = tmp_path / "furiosa-smi"
    tool.write_text(
        "#!/bin/sh\n"
        f'if [ "$1 $2 $3" = "info --format full" ]; then cat "{VENDOR / "furiosa" / Path(INFO_FULL).name}"\n'
        f'elif [ "$1" = "status" ]; then cat "{VENDOR / "furiosa" / Path(STATUS).name}"\n'
        'else echo "unknown command $*" >&2; exit 2; fi\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    backend = registry.create("furiosa", tool_path=str(tool), timeout=5.0, node="n1")
    snap = backend.sample()
    assert snap.backend == "furiosa"
    assert [d.info.device for d in snap.devices] == ["0", "1", "2", "3"]
    assert snap.devices[0].memory_total_bytes == int(47.5 * GIB) and snap.devices[0].clock_hertz == 2000e6
    assert [i.uuid[:8] for i in backend.discover()] == ["007741DA", "A2216AE7", "B1B02CFC", "09512C86"]


def test_backend_missing_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendError, match="'furiosa-smi' not found"):
        FuriosaBackend().sample()


def test_backend_reads_the_vendor_exporter() -> None:
    with serving(read_fixture(PROM)) as url:
        (npu,) = FuriosaBackend(metrics_url=url).sample().devices
    assert npu.power_watts == 50.0


def test_fetch_url_bounds() -> None:
    with pytest.raises(BackendError, match="only http and https"):
        fetch_url("file:///etc/passwd")
    with pytest.raises(BackendError, match="127.0.0.1:9"):
        fetch_url("http://127.0.0.1:9/metrics", timeout=1.0)


def test_fetch_url_size_limit() -> None:
    with serving("x" * 100_000) as url, pytest.raises(BackendError, match="larger than 1000 bytes"):
        fetch_url(url, max_bytes=1000)

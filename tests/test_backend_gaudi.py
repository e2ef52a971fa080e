"""Gaudi backend: hl-smi tables from the shared fixtures, the CSV query form on a hand-written
sample, and the backend end to end against a fake ``hl-smi`` (a real subprocess)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fixturepaths import fake_tool, fixture, read_fixture

from npuobs.devices import registry
from npuobs.devices.base import BackendError
from npuobs.devices.gaudi import QUERY_FIELDS, GaudiBackend, detect, merge, parse_query_csv, parse_table

MIB = 1 << 20

# HAND-WRITTEN sample, not a capture: no real ``hl-smi -Q ... -f csv,noheader,nounits`` output is
# public (see SOURCES.md). It follows Habana's documented field list in QUERY_FIELDS order, with
# values copied from the 8x HL-225 table fixture (AIPs 0 and 6) plus uuids, clocks and corrected
# ECC counts we made up, and one all-N/A device the way hl-smi prints fields it cannot read.
HAND_WRITTEN_CSV = """\
0, 01P4-HL2080A0-03, HL-225, 0000:33:00.0, 1.21.1-bfcec49, 35, 525, 94963, 98304, 88, 1600, 1800, 3, 21
6, 01P4-HL2080A0-09, HL-225, 0000:b4:00.0, 1.21.1-bfcec49, 23, 85, 82507, 98304, 0, 1600, 1800, 0, 176
7, N/A, HL-225, 0000:4d:00.0, 1.21.1-bfcec49, N/A, N/A, N/A, N/A, N/A, N/A, N/A, N/A, N/A
"""


def test_table_8x_hl225() -> None:
    readings = parse_table(read_fixture("vendor/intel-gaudi/hl-smi-table-8x-hl-225.txt"))
    assert [r.info.device for r in readings] == [str(i) for i in range(8)]
    r0 = readings[0]
    assert r0.info.vendor == "intel" and r0.info.model == "HL-225"
    assert r0.info.driver_version == "1.21.1-bfcec49"
    assert r0.info.firmware_version == "59.2.3.0"
    assert r0.info.runtime_version == "1.21.1"
    assert r0.temperature_celsius == 35.0
    assert r0.power_watts == 525.0 and r0.power_limit_watts == 600.0
    assert r0.memory_used_bytes == 94963 * MIB and r0.memory_total_bytes == 98304 * MIB
    assert r0.utilization_ratio == pytest.approx(0.88)
    # "Volatile Uncor-Events": 21 on AIP 0, 176 on AIP 6
    assert dict(r0.errors_total) == {"ecc_uncorrected": 21}
    assert readings[6].errors_total["ecc_uncorrected"] == 176
    assert readings[1].errors_total["ecc_uncorrected"] == 0
    # the table has no clocks, no corrected ECC, no energy: absent, not zero
    assert r0.clock_hertz is None and r0.energy_joules_total is None
    assert "ecc_corrected" not in r0.errors_total


def test_table_gaudi3_version_mismatch_is_visible() -> None:
    readings = parse_table(
        read_fixture("vendor/intel-gaudi/hl-smi-table-8x-hl-325l-gaudi3-hl-1.21.0-driver-1.20.1.txt"))
    r = readings[3]
    assert r.info.model == "HL-325L"
    assert r.info.runtime_version == "1.21.0" and r.info.driver_version == "1.20.1-366eb9c"
    assert r.info.firmware_version == "59.2.1.0"
    assert r.temperature_celsius == 40.0 and r.power_watts == 228.0 and r.power_limit_watts == 900.0
    assert r.memory_total_bytes == 131072 * MIB and r.memory_used_bytes == 672 * MIB


def test_table_older_hl_1_17_format() -> None:
    readings = parse_table(
        read_fixture("vendor/intel-gaudi/hl-smi-table-2x-hl-225-hl-1.17.1-openshift-pod.txt"))
    assert [r.info.device for r in readings] == ["0", "1"]  # process rows are not devices
    r1 = readings[1]
    assert r1.info.firmware_version == "51.5.0" and r1.info.driver_version == "1.17.1-78932ae"
    assert r1.power_watts == 85.0 and r1.temperature_celsius == 28.0
    assert dict(r1.errors_total) == {"ecc_uncorrected": 0}  # "Volatile Uncorr. ECC" header


def test_query_csv_hand_written_sample() -> None:
    readings = parse_query_csv(HAND_WRITTEN_CSV)
    r0, r6, r7 = readings
    assert r0.info.uuid == "01P4-HL2080A0-03" and r0.info.model == "HL-225"
    assert r0.power_watts == 525.0 and r0.temperature_celsius == 35.0
    assert r0.memory_used_bytes == 94963 * MIB
    assert r0.clock_hertz == 1.6e9 and r0.clock_max_hertz == 1.8e9
    assert dict(r0.errors_total) == {"ecc_corrected": 3, "ecc_uncorrected": 21}
    assert r6.errors_total["ecc_uncorrected"] == 176
    assert r0.power_limit_watts is None  # not in the documented query fields
    assert r7.info.uuid == "" and r7.power_watts is None and r7.memory_used_bytes is None
    assert dict(r7.errors_total) == {}


def test_query_csv_with_header_and_units() -> None:
    fields = ("index", "power.draw", "memory.used", "temperature.aip")
    text = "index, power.draw [W], memory.used [MiB], temperature.aip [C]\n0, 100 W, 1024 MiB, 40 C\n"
    (r,) = parse_query_csv(text, fields)
    assert r.power_watts == 100.0 and r.memory_used_bytes == 1 << 30 and r.temperature_celsius == 40.0


def test_merge_adds_power_limit_and_versions_from_the_table() -> None:
    table = parse_table(read_fixture("vendor/intel-gaudi/hl-smi-table-8x-hl-225.txt"))
    merged = merge(parse_query_csv(HAND_WRITTEN_CSV), table)
    assert [r.info.device for r in merged] == ["0", "6", "7"]
    assert merged[0].power_limit_watts == 600.0
    assert merged[0].info.firmware_version == "59.2.3.0" and merged[0].info.uuid.startswith("01P4")
    assert merged[2].power_watts == 92.0  # N/A in the query, filled from the table


@pytest.mark.parametrize("text", [
    "", "0, x\n", "a, b, c, d, e, f, g, h, i, j, k, l, m, n\n",
    "0, u, HL-225, bus, drv, hot, 1, 1, 1, 1, 1, 1, 1, 1\n",
    "0, u, HL-225, bus, drv, 1, 1, -5, 1, 1, 1, 1, 1, 1\n",
])
def test_query_csv_garbage_raises_backend_error(text: str) -> None:
    with pytest.raises(BackendError, match="hl-smi"):
        parse_query_csv(text)


def test_table_garbage_raises_backend_error() -> None:
    with pytest.raises(BackendError, match="hl-smi"):
        parse_table("no table here")
    broken = read_fixture("vendor/intel-gaudi/hl-smi-table-8x-hl-225.txt").replace("35C", "hotC")
    with pytest.raises(BackendError, match="AIP 0 temperature"):
        parse_table(broken)


def test_sample_end_to_end_with_afake_tool(tmp_path: Path) -> None:
    table = fixture("vendor/intel-gaudi/hl-smi-table-8x-hl-225.txt")
    tool = fake_tool(tmp_path, "hl-smi", (
        "import sys\n"
        "if '-Q' in sys.argv:\n"
        f"    assert sys.argv[sys.argv.index('-Q') + 1] == {','.join(QUERY_FIELDS)!r}\n"
        f"    sys.stdout.write({HAND_WRITTEN_CSV!r})\n"
        "else:\n"
        f"    sys.stdout.buffer.write(open({str(table)!r}, 'rb').read())\n"))
    backend = registry.create("gaudi", tool_path=tool, timeout=10.0)
    assert isinstance(backend, GaudiBackend)
    snap = backend.sample()
    assert snap.backend == "gaudi"
    r0 = snap.devices[0]
    assert r0.power_watts == 525.0 and r0.power_limit_watts == 600.0 and r0.clock_hertz == 1.6e9
    assert r0.info.runtime_version == "1.21.1"
    assert [d.device for d in backend.discover()] == ["0", "6", "7"]


def test_sample_without_table_still_reports_the_query(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, "hl-smi", (
        "import sys\n"
        "if '-Q' not in sys.argv:\n"
        "    sys.exit('table broken')\n"
        f"sys.stdout.write({HAND_WRITTEN_CSV!r})\n"))
    snap = GaudiBackend(tool_path=tool, timeout=10.0).sample()
    assert snap.devices[0].power_watts == 525.0 and snap.devices[0].power_limit_watts is None


def test_hanging_tool_times_out_quickly(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, "hl-smi", "import time; time.sleep(60)\n")
    started = time.monotonic()
    with pytest.raises(BackendError, match="timed out"):
        GaudiBackend(tool_path=tool, timeout=0.5).sample()
    assert time.monotonic() - started < 5


def test_detect_on_a_fake_host_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPUOBS_HOST_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert detect() is False
    (tmp_path / "bin").mkdir()
    fake_tool(tmp_path / "bin", "hl-smi", "")  # hl-smi on PATH (as in a Gaudi container image)
    assert detect() is True

"""Tolerant parsing of vendor tables and documents: columns by header name, any box-drawing
border set, several records in one bordered block, trailing list punctuation, absent optional
columns, PCI ids never taken for model names, older layouts of the same field, and one failing
sub-command costing only its own fields. Real samples come from tests/corpus (see SOURCES.md);
where a test edits one (to put a number where the sample printed N/A) it says so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fixturepaths import fake_tool, read_fixture

from npuobs.devices import amd, furiosa, nvml, rebellions, units
from npuobs.devices.base import BackendError

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).parent / "corpus"


def corpus(name: str) -> str:
    return (CORPUS / name).read_text(encoding="utf-8")


def test_furiosa_2024_1_status_without_liveness_and_memory_columns() -> None:
    """furiosa-smi 2024.1: no Liveness/Memory columns, cells end in ',' (``Core 0: 0.00%,``)."""
    (npu0, npu1) = furiosa.parse_status(corpus("furiosa/fsmi-v2024.1.0-furiosa_smi-status.txt"))
    assert npu0.info.device == "0" and npu1.info.device == "1" and npu0.info.model == "RNGD"
    assert npu0.utilization_ratio == 0.0
    assert npu0.up is True and npu0.healthy is None  # the tool lists it; health is not printed
    assert npu0.memory_total_bytes is None and npu0.memory_used_bytes is None  # absent, not 0


def test_furiosa_pert_column_is_the_runtime_version_and_index_is_ignored() -> None:
    readings = furiosa.parse_info(corpus("furiosa/fsmi-experimental-quick_start_with_furiosa_torch-info.txt"))
    assert [r.info.device for r in readings] == ["0", "1"]  # from Device (npuN), not the Index column
    assert [r.info.runtime_version for r in readings] == ["0.1.0+52e5705"] * 2
    assert readings[0].info.firmware_version == "1.2.0+25b24d3"
    assert [r.temperature_celsius for r in readings] == [34.41, 32.59]


def test_unknown_columns_are_logged_once_at_debug(caplog: pytest.LogCaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(units, "_LOGGED_UNKNOWN", set())
    text = corpus("furiosa/fsmi-v2024.2.0-furiosa_smi_cli-info-full.txt")
    with caplog.at_level(logging.DEBUG, logger="npuobs.devices.units"):
        furiosa.parse_info(text)
        furiosa.parse_info(text)
    messages = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert messages == ["furiosa-smi info: column 'PCI-DEV' is not read",
                        "furiosa-smi info: column 'S/N' is not read"]


def test_furiosa_2024_1_info_full_clock_na_and_placeholder_serials() -> None:
    readings = furiosa.parse_info(corpus("furiosa/fsmi-v2024.1.0-furiosa_smi-info-full.txt"))
    assert [r.info.uuid for r in readings] == ["3E93AE7C-E8EA-4C62-BED6-AD2EC0461AE8",
                                               "176DAD0F-1510-475C-91D8-5F79551CF718"]
    assert [r.clock_hertz for r in readings] == [None, None]  # "Clock   N/A"


def test_unicode_box_borders_parse_like_ascii_ones() -> None:
    ascii_table = read_fixture("vendor/furiosa/furiosa-smi-info-4x-rngd-fw1.7.0.txt")
    heavy = ascii_table.translate(str.maketrans({"+": "╋", "-": "━", "|": "┃"}))
    rounded = ascii_table.translate(str.maketrans({"+": "┼", "-": "─", "|": "│"}))
    expected = furiosa.parse_info(ascii_table)
    assert furiosa.parse_info(heavy) == expected
    assert furiosa.parse_info(rounded) == expected


def test_several_devices_in_one_bordered_block_are_several_records() -> None:
    """rbln-stat (and furiosa-smi info in some releases) print device rows without a rule between them."""
    table = read_fixture("vendor/furiosa/furiosa-smi-info-4x-rngd-fw1.7.0.txt").splitlines()
    rule = table[0]
    # keep the header's rules, drop the rules between device rows (the rows stay as published)
    merged = [line for i, line in enumerate(table) if line != rule or i < 3 or i == len(table) - 1]
    readings = furiosa.parse_info("\n".join(merged))
    assert [r.info.device for r in readings] == ["0", "1", "2", "3"]
    assert [r.temperature_celsius for r in readings] == [40.98, 41.34, 40.43, 46.57]
    stat = read_fixture("vendor/rebellions/rbln-stat-table-1x-rbln-ca12.txt").splitlines()
    row = next(line for line in stat if "rbln0" in line)
    twice = stat[:stat.index(row) + 1] + [row.replace("| 0   ", "| 1   ").replace("rbln0", "rbln1")
                                           .replace("0000:18:00.0", "0000:19:00.0")] + stat[stat.index(row) + 1:]
    assert [r.info.device for r in rebellions.parse_stat_table("\n".join(twice))] == ["0", "1"]


def test_na_with_a_reason_is_absent() -> None:
    """rocm-smi 6.0.2 on a dual-die RX 6700 XT: ``"Average Graphics Package Power (W)": "N/A (Secondary die)"``."""
    (card,) = amd.parse_rocm_smi_json(corpus("amd/telegraf-rx6700xt_rocm602.json"))
    assert card.power_watts is None and card.power_limit_watts == 211.0
    assert units.is_absent("N/A (Secondary die)") and not units.is_absent("12 (W)")


def test_pci_ids_are_never_model_names() -> None:
    (rocm43,) = amd.parse_rocm_smi_json(corpus("amd/telegraf-rx6700xt_rocm430.json"))
    assert rocm43.info.model == ""  # "Card series"/"Card model"/"Card vendor" are all "0x1002"
    (vega10,) = amd.parse_rocm_smi_json(corpus("amd/telegraf-vega-10-XT.json"))
    assert vega10.info.model == ""  # only "Card model": "0xc1e"
    (rocm571,) = amd.parse_rocm_smi_json(corpus("amd/telegraf-rx6700xt_rocm571.json"))
    assert rocm571.info.model == "Navi 22 [Radeon RX 6700/6700 XT / 6800M]"  # "Card model" is 0x6601
    assert units.is_pci_id("0x1002") and not units.is_pci_id("MI300X")


def test_legacy_single_bit_double_bit_ecc_layout() -> None:
    """Drivers before DTD v11 and vGPU guests nest volatile ECC as single_bit/double_bit blocks.

    The published sample (telegraf tesla_p4.xml, a GRID P4-1Q vGPU) prints N/A in every counter;
    this test replaces the two volatile totals with numbers to show they are read (an edit of the
    sample, made here, not a sample)."""
    text = corpus("nvidia/telegraf-tesla_p4.xml")
    (plain,) = nvml.parse_smi_xml(text)
    assert "ecc_corrected" not in plain.errors_total  # N/A stays absent
    volatile_start = text.index("<volatile>")
    head, tail = text[:volatile_start], text[volatile_start:]
    tail = tail.replace("<total>N/A</total>", "<total>7</total>", 1)
    tail = tail.replace("<total>N/A</total>", "<total>2</total>", 1)
    (gpu,) = nvml.parse_smi_xml(head + tail)
    assert gpu.errors_total["ecc_corrected"] == 7 and gpu.errors_total["ecc_uncorrected"] == 2


def test_furiosa_one_failing_sub_command_keeps_the_other(tmp_path: Path) -> None:
    info = CORPUS / "furiosa/fsmi-v2024.2.0-furiosa_smi_cli-info-full.txt"
    tool = fake_tool(tmp_path, "furiosa-smi", (
        "import sys\n"
        "if sys.argv[1] == 'status':\n"
        "    sys.exit('status: device busy')\n"
        f"sys.stdout.write(open({str(info)!r}, encoding='utf-8').read())\n"))
    backend = furiosa.FuriosaBackend(tool_path=tool, timeout=10.0)
    readings = backend.sample().devices
    assert [r.temperature_celsius for r in readings] == [30.00, 32.97, 32.60, 31.67]
    assert readings[0].memory_total_bytes is None
    assert list(backend.last_errors) == ["furiosa-smi status"]
    assert "device busy" in backend.last_errors["furiosa-smi status"]


def test_every_sub_command_failing_is_one_backend_error(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, "furiosa-smi", "import sys; sys.exit('no driver')\n")
    with pytest.raises(BackendError, match="furiosa-smi info: .*no driver; furiosa-smi status: .*no driver"):
        furiosa.FuriosaBackend(tool_path=tool, timeout=10.0).sample()


def test_amd_smi_monitor_columns_it_does_not_map_are_logged_once(caplog: pytest.LogCaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(units, "_LOGGED_UNKNOWN", set())
    text = corpus("amd/amdsmi-changelog-monitor-violation-16gpu.txt")
    with caplog.at_level(logging.DEBUG, logger="npuobs.devices.units"):
        assert len(amd.parse_monitor(text)) == 16 and len(amd.parse_monitor(text)) == 16
    assert sorted(r.getMessage() for r in caplog.records) == [
        f"amd-smi monitor: column {name!r} is not read"
        for name in sorted(("HBM_TVIOL", "PHOT_TVIOL", "PVIOL", "TVIOL", "VR_TVIOL"))]

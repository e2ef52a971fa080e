"""The Rebellions ATOM backend against a real ``rbln-stat --json`` capture, the published table and
the rbln-metrics-exporter sample."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from fixturepaths import FIXTURES, read_fixture, serving

from npuobs.devices import registry
from npuobs.devices.base import BackendError
from npuobs.devices.rebellions import (
    RebellionsBackend,
    parse_exporter_metrics,
    parse_stat_json,
    parse_stat_table,
)

JSON = "vendor/rebellions/rbln-stat-json-8x-rbln-ca22-loaded.json"
TABLE = "vendor/rebellions/rbln-stat-table-1x-rbln-ca12.txt"
PROM = "vendor/rebellions/rbln-metrics-exporter-metrics-sample.prom"
GIB = 1 << 30


def load_json() -> dict[str, Any]:
    return json.loads(read_fixture(JSON))


def test_json_eight_cards() -> None:
    readings = parse_stat_json(read_fixture(JSON))
    # "npu" is 0,0,1,2,3,0,0,1 in the capture: the id comes from the rblnN device name instead
    assert [r.info.device for r in readings] == ["0", "2", "3", "6", "7", "5", "1", "4"]
    by_id = {r.info.device: r for r in readings}
    busy = by_id["5"]  # the card serving the vLLM load
    assert busy.info.model == "RBLN-CA22"
    assert busy.info.uuid and busy.info.driver_version == "3.0.0" and busy.info.firmware_version == "3.0.0"
    assert busy.temperature_celsius == 45.0
    assert busy.power_watts == pytest.approx(37.257088)  # "37257088uW"
    assert busy.utilization_ratio == pytest.approx(0.044)  # "4.4" percent
    assert busy.memory_used_bytes == 1545601024
    assert busy.memory_total_bytes == 16877879296
    assert by_id["0"].power_watts == pytest.approx(18.109794)  # "18109794uW"
    assert by_id["1"].memory_used_bytes == 0
    assert all(r.healthy is True and r.up is True for r in readings)  # status "normal"
    assert all(r.power_limit_watts is None and r.clock_hertz is None for r in readings)


def test_json_ids_fall_back_to_bus_id_then_uuid() -> None:
    doc = load_json()
    for dev in doc["devices"]:
        dev["device"] = "rbln"  # no index in the name
    readings = parse_stat_json(json.dumps(doc))
    assert readings[0].info.device == "0000:03:00.0"
    for dev in doc["devices"]:
        dev["pci"]["bus_id"] = "0000:00:00.0"
    assert parse_stat_json(json.dumps(doc))[0].info.device == "3a5d3eec-4b2e-4fa0-afa0-192c9b99a7c2"
    for dev in doc["devices"]:
        dev["uuid"] = "same"
    with pytest.raises(BackendError, match="cannot tell the devices apart"):
        parse_stat_json(json.dumps(doc))


def test_json_abnormal_status_and_numbers_as_numbers() -> None:
    doc = load_json()
    doc["devices"][0]["status"] = "error"
    doc["devices"][1]["temperature"] = 33  # a number instead of "33C": same meaning
    doc["devices"][2]["util"] = "N/A"
    readings = parse_stat_json(json.dumps(doc))
    assert readings[0].healthy is False and readings[0].up is True
    assert readings[1].temperature_celsius == 33.0
    assert readings[2].utilization_ratio is None


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(devices={}), "'devices' list"),
    (lambda d: d["devices"].clear(), "no devices"),
    (lambda d: d["devices"].__setitem__(0, "rbln0"), r"devices\[0\]: expected an object"),
    (lambda d: d["devices"][1].update(memory="lots"), r"devices\[1\]: 'memory' is a str"),
    (lambda d: d["devices"][1].update(card_power=True), "'card_power' is a bool"),
    (lambda d: d["devices"][1].update(card_power="18W3"), r"devices\[1\]"),
    (lambda d: d["devices"][1]["memory"].update(used="-1"), "negative memory"),
])
def test_json_wrong_shapes(mutate: Any, message: str) -> None:
    doc = load_json()
    mutate(doc)
    with pytest.raises(BackendError, match=message):
        parse_stat_json(json.dumps(doc))


def test_json_not_json() -> None:
    with pytest.raises(BackendError, match="rbln-stat --json: not JSON"):
        parse_stat_json(read_fixture(TABLE))


def test_table() -> None:
    (npu,) = parse_stat_table(read_fixture(TABLE))
    assert npu.info.device == "0" and npu.info.model == "RBLN-CA12"
    assert npu.info.driver_version == "1.2.79-6d00b56-release"  # "KMD ver:" in the title row
    assert npu.temperature_celsius == 37.0
    assert npu.power_watts == 21.4
    assert npu.memory_used_bytes == 0
    assert npu.memory_total_bytes == round(15.7 * GIB)  # rounded by the tool to 0.1 GiB
    assert npu.utilization_ratio == 0.0
    assert npu.healthy is None  # the table has no status column


def test_table_garbage() -> None:
    with pytest.raises(BackendError, match="rbln-stat: no table"):
        parse_stat_table("")
    with pytest.raises(BackendError, match="rbln-stat, rbln0"):
        parse_stat_table(read_fixture(TABLE).replace(" 37C ", " hot "))


def test_exporter_sample_in_gib() -> None:
    readings = parse_exporter_metrics(read_fixture(PROM))
    assert [r.info.device for r in readings] == ["0", "1", "3"]
    rbln0, rbln1, rbln3 = readings
    assert rbln0.info.model == "RBLN-CA25" and rbln0.info.firmware_version == "2.0.1"
    assert rbln0.memory_total_bytes == 16877879296  # 15.71875 GiB: the CA22 JSON's exact total
    assert rbln1.temperature_celsius == 54.0
    assert rbln3.healthy is True  # HEALTH = error status 0
    assert rbln0.healthy is None  # no HEALTH series for it in the sample


def test_exporter_in_bytes_and_unhealthy() -> None:
    text = ('RBLN_DEVICE_STATUS:DRAM_TOTAL{name="rbln0",card="RBLN-CA22"} 16877879296\n'
            'RBLN_DEVICE_STATUS:DRAM_USED{name="rbln0",card="RBLN-CA22"} 75497472\n'
            'RBLN_DEVICE_STATUS:UTILIZATION{name="rbln0",card="RBLN-CA22"} 26.4\n'
            'RBLN_DEVICE_STATUS:CARD_POWER{name="rbln0",card="RBLN-CA22"} 18.1\n'
            'RBLN_DEVICE_STATUS:HEALTH{name="rbln0",card="RBLN-CA22"} 2\n')
    (npu,) = parse_exporter_metrics(text)
    assert npu.memory_total_bytes == 16877879296 and npu.memory_used_bytes == 75497472
    assert npu.utilization_ratio == pytest.approx(0.264) and npu.power_watts == 18.1
    assert npu.healthy is False


def test_exporter_garbage() -> None:
    with pytest.raises(BackendError, match="no RBLN_DEVICE_STATUS"):
        parse_exporter_metrics("up 1\n")
    with pytest.raises(BackendError, match="without a name label"):
        parse_exporter_metrics('RBLN_DEVICE_STATUS:TEMPERATURE{card="x"} 40\n')
    with pytest.raises(BackendError, match="rbln0: negative memory size"):
        parse_exporter_metrics('RBLN_DEVICE_STATUS:DRAM_TOTAL{name="rbln0"} -5\n')
    with pytest.raises(BackendError, match="rbln0: memory size .* out of range"):
        parse_exporter_metrics('RBLN_DEVICE_STATUS:DRAM_TOTAL{name="rbln0"} 1e308\n'
                               'RBLN_DEVICE_STATUS:DRAM_TOTAL{name="rbln1"} 15.7\n')


def _fake_stat(tmp_path: Path) -> str:
    tool = tmp_path / "rbln-stat"
    json_path, table_path = FIXTURES / JSON, FIXTURES / TABLE
    tool.write_text("#!/bin/sh\n"
                    f'if [ "$1" = "--json" ]; then cat "{json_path}"; else cat "{table_path}"; fi\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return str(tool)


def test_backend_runs_rbln_stat(tmp_path: Path) -> None:
    tool = _fake_stat(tmp_path)
    snap = registry.create("rebellions", tool_path=tool, node="n1", timeout=5.0).sample()
    assert snap.backend == "rebellions" and len(snap.devices) == 8
    (npu,) = RebellionsBackend(tool_path=tool, stat_format="table").sample().devices
    assert npu.info.model == "RBLN-CA12"
    with pytest.raises(BackendError, match="stat_format"):
        RebellionsBackend(stat_format="xml")


def test_backend_reads_the_vendor_exporter() -> None:
    with serving(read_fixture(PROM)) as url:
        infos = RebellionsBackend(metrics_url=url).discover()
    assert [i.uuid[:8] for i in infos] == ["55668c63", "84389d45", "8e65fc0d"]

"""AMD backend: amd-smi / rocm-smi outputs from the shared fixtures, the amdsmi library path
through a stand-in module, and the backend end to end against fake CLIs (real subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixturepaths import fake_tool, fixture, read_fixture

from npuobs.devices import registry
from npuobs.devices.amd import (
    AmdBackend,
    detect,
    parse_metric_json,
    parse_monitor,
    parse_rocm_smi_json,
    parse_static_json,
    read_amdsmi,
)
from npuobs.devices.base import BackendError

MIB = 1 << 20

# HAND-WRITTEN samples in the documented amd-smi JSON layout (ROCm 6.3+ ``gpu_data`` wrapper,
# ``{"value", "unit"}`` objects; key names from amdsmi_cli/amdsmi_commands.py). No real
# ``amd-smi metric --json`` for an Instinct GPU is public beyond the power-only fixture.
HAND_WRITTEN_METRIC = {"gpu_data": [{
    "gpu": 0,
    "usage": {"gfx_activity": {"value": 37, "unit": "%"}, "umc_activity": {"value": 5, "unit": "%"}},
    "power": {"socket_power": {"value": 512, "unit": "W"}, "throttle_status": "THROTTLED"},
    "clock": {"gfx_0": {"clk": {"value": 2100, "unit": "MHz"}, "max_clk": {"value": 2100, "unit": "MHz"}},
              "mem_0": {"clk": {"value": 1300, "unit": "MHz"}}},
    "temperature": {"edge": "N/A", "hotspot": {"value": 61, "unit": "C"}, "mem": {"value": 48, "unit": "C"}},
    "ecc": {"total_correctable": 4, "total_uncorrectable": 1},
    "pcie": {"replay_count": 2},
    "energy": {"total_energy_consumption": {"value": 123456.5, "unit": "J"}},
    "mem_usage": {"total_vram": {"value": 196592, "unit": "MB"}, "used_vram": {"value": 1024, "unit": "MB"}},
}]}
HAND_WRITTEN_STATIC = [{
    "gpu": 0, "asic": {"market_name": "AMD Instinct MI300X"},
    "driver": {"name": "amdgpu", "version": "6.10.5"}, "vbios": {"version": "113-M3000100-103"},
}]


def test_metric_power_json_fixture() -> None:
    (r,) = parse_metric_json(read_fixture("vendor/amd/amd-smi-metric-power-json.json"))
    assert r.info.device == "0" and r.info.vendor == "amd"
    assert r.power_watts == 10.0
    assert r.throttled is False  # "UNTHROTTLED"
    # a power-only query says nothing about the rest: absent, not zero
    assert r.temperature_celsius is None and r.memory_used_bytes is None and r.utilization_ratio is None
    assert dict(r.errors_total) == {}


def test_metric_full_hand_written_with_static() -> None:
    static = parse_static_json(json.dumps(HAND_WRITTEN_STATIC))
    (r,) = parse_metric_json(json.dumps(HAND_WRITTEN_METRIC), static)
    assert r.info.model == "AMD Instinct MI300X"
    assert r.info.driver_version == "6.10.5" and r.info.firmware_version == "113-M3000100-103"
    assert r.power_watts == 512.0 and r.throttled is True
    assert r.temperature_celsius == 61.0  # hotspot, not edge (N/A) or memory
    assert r.utilization_ratio == pytest.approx(0.37)
    assert r.clock_hertz == 2.1e9 and r.clock_max_hertz == 2.1e9
    assert r.memory_used_bytes == 1024 * MIB and r.memory_total_bytes == 196592 * MIB  # "MB" is MiB
    assert r.energy_joules_total == 123456.5
    assert dict(r.errors_total) == {"ecc_corrected": 4, "ecc_uncorrected": 1, "pcie": 2}


def test_monitor_mi300_cpx_32_partitions() -> None:
    readings = parse_monitor(read_fixture("vendor/amd/amd-smi-monitor-p-t-v-mi300-cpx.txt"))
    assert len(readings) == 32
    r4 = readings[4]
    assert r4.info.device == "4"
    assert r4.power_watts == 221.0 and r4.temperature_celsius == 50.0
    assert r4.memory_used_bytes == 283 * MIB and r4.memory_total_bytes == 196300 * MIB
    assert r4.utilization_ratio is None  # no GFX column in this selection


def test_monitor_all_columns_one_gpu_ignores_process_table() -> None:
    (r,) = parse_monitor(read_fixture("vendor/amd/amd-smi-monitor-q-1gpu.txt"))
    assert r.power_watts == 199.0 and r.temperature_celsius == 103.0
    assert r.utilization_ratio == pytest.approx(0.99) and r.clock_hertz == 1.92e9
    assert r.memory_used_bytes == 1235 * MIB and r.memory_total_bytes == 16335 * MIB
    assert dict(r.errors_total) == {"ecc_corrected": 0, "ecc_uncorrected": 0, "pcie": 0}


def test_monitor_after_version_banner_and_warning_line() -> None:
    readings = parse_monitor(
        read_fixture("vendor/amd/amd-smi-version-and-monitor-ptum-8x-mi300x-with-warning.txt"))
    assert len(readings) == 8
    r1 = readings[1]
    assert r1.info.driver_version == "6.10.5" and r1.info.runtime_version == "6.4.0"
    assert r1.power_watts == 144.0 and r1.temperature_celsius == 42.0  # "42 °C"
    assert r1.clock_hertz == 138e6 and r1.utilization_ratio == 0.0


def test_rocm_smi_602() -> None:
    readings = parse_rocm_smi_json(read_fixture("vendor/amd/rocm-smi-json-4x-mi100-rocm602.json"))
    assert [r.info.device for r in readings] == ["0", "1", "2", "3"]
    r0 = readings[0]
    assert r0.info.model == "Arcturus GL-XL [Instinct MI100]"
    assert r0.info.uuid == "0x79ccd55167a2124a"
    assert r0.info.driver_version == "6.3.6" and r0.info.firmware_version == "113-D3431401-101"
    assert r0.temperature_celsius == 55.0  # junction sensor, not edge (53.0)
    assert r0.power_watts == 36.0 and r0.power_limit_watts == 290.0
    assert r0.memory_used_bytes == 6750208 and r0.memory_total_bytes == 34342961152
    assert r0.clock_hertz == 300e6 and r0.utilization_ratio == 0.0
    assert dict(r0.errors_total) == {"pcie": 0}


def test_rocm_smi_571_older_keys_and_process_entry() -> None:
    readings = parse_rocm_smi_json(read_fixture("vendor/amd/rocm-smi-json-6x-mi100-rocm571.json"))
    assert len(readings) == 6  # "system" (with its PID entry) is not a card
    assert readings[0].info.uuid == ""  # "Unique ID": "N/A"
    assert readings[0].info.driver_version == "6.2.4"
    assert readings[0].temperature_celsius == 34.0 and readings[0].power_watts == 39.0


class _NotSupported(Exception):
    """Stands in for amdsmi.AmdSmiLibraryException (a subclass of AmdSmiException)."""


class _FakeAmdsmi:
    """A stand-in for the ``amdsmi`` module with the API names its Python bindings export."""

    AmdSmiException = _NotSupported

    class AmdSmiTemperatureType:
        EDGE, HOTSPOT = 0, 1

    class AmdSmiTemperatureMetric:
        CURRENT = 0

    class AmdSmiClkType:
        GFX = 0

    def amdsmi_get_processor_handles(self) -> list[str]:
        return ["h0", "h1"]

    def amdsmi_get_gpu_asic_info(self, h: str) -> dict[str, Any]:
        return {"market_name": "AMD Instinct MI300X"}

    def amdsmi_get_gpu_device_uuid(self, h: str) -> str:
        return f"uuid-{h}"

    def amdsmi_get_gpu_driver_info(self, h: str) -> dict[str, Any]:
        return {"driver_name": "amdgpu", "driver_version": "6.10.5"}

    def amdsmi_get_power_info(self, h: str) -> dict[str, Any]:
        return {"socket_power": "N/A", "current_socket_power": 700, "average_socket_power": "N/A"}

    def amdsmi_get_power_cap_info(self, h: str) -> dict[str, Any]:
        return {"power_cap": 750_000_000}  # microwatts

    def amdsmi_get_temp_metric(self, h: str, kind: int, metric: int) -> int:
        assert kind == self.AmdSmiTemperatureType.HOTSPOT
        return 71

    def amdsmi_get_gpu_activity(self, h: str) -> dict[str, Any]:
        return {"gfx_activity": 99, "umc_activity": 40, "mm_activity": "N/A"}

    def amdsmi_get_gpu_vram_usage(self, h: str) -> dict[str, Any]:
        return {"vram_total": 196592, "vram_used": 2048}

    def amdsmi_get_clock_info(self, h: str, kind: int) -> dict[str, Any]:
        return {"clk": 2100, "min_clk": 500, "max_clk": 2100}

    def amdsmi_get_gpu_total_ecc_count(self, h: str) -> dict[str, Any]:
        if h == "h1":
            raise _NotSupported("AMDSMI_STATUS_NOT_SUPPORTED")
        return {"correctable_count": 7, "uncorrectable_count": 0}

    def amdsmi_get_energy_count(self, h: str) -> dict[str, Any]:
        return {"energy_accumulator": 1_000_000, "counter_resolution": 15.3}


def test_library_path_through_a_stand_in_module() -> None:
    r0, r1 = read_amdsmi(_FakeAmdsmi())
    assert r0.info.model == "AMD Instinct MI300X" and r0.info.uuid == "uuid-h0"
    assert r0.info.driver_version == "6.10.5"
    assert r0.power_watts == 700.0 and r0.power_limit_watts == pytest.approx(750.0)
    assert r0.temperature_celsius == 71.0 and r0.utilization_ratio == pytest.approx(0.99)
    assert r0.memory_total_bytes == 196592 * MIB and r0.memory_used_bytes == 2048 * MIB
    assert r0.clock_hertz == 2.1e9 and r0.clock_max_hertz == 2.1e9
    assert r0.energy_joules_total == pytest.approx(15.3)
    assert dict(r0.errors_total) == {"ecc_corrected": 7, "ecc_uncorrected": 0}
    # functions this "amdsmi" lacks, or that raise "not supported", leave fields absent
    assert dict(r1.errors_total) == {}
    assert r0.throttled is None and r0.info.firmware_version == ""


@pytest.mark.parametrize("parser,text", [
    (parse_metric_json, "not json"),
    (parse_metric_json, '[{"gpu": "zero"}]'),
    (parse_metric_json, '[{"gpu": 0, "power": {"socket_power": {"value": "hot", "unit": "W"}}}]'),
    (parse_metric_json, '[{"gpu": 0, "mem_usage": {"used_vram": {"value": -1, "unit": "MB"}}}]'),
    (parse_monitor, "GPU  POWER\n  0  12 W  extra\n"),
    (parse_monitor, "nothing here"),
    (parse_rocm_smi_json, '{"card0": {"GPU use (%)": "lots"}}'),
    (parse_rocm_smi_json, "[]"),
])
def test_garbage_raises_backend_error(parser: Any, text: str) -> None:
    with pytest.raises(BackendError):
        parser(text)


def test_rocm_smi_end_to_end_with_afake_tool(tmp_path: Path) -> None:
    src = fixture("vendor/amd/rocm-smi-json-4x-mi100-rocm602.json")
    tool = fake_tool(tmp_path, "rocm-smi", (
        "import sys\n"
        "assert '--json' in sys.argv\n"
        f"sys.stdout.buffer.write(open({str(src)!r}, 'rb').read())\n"))
    backend = registry.create("amd", tool_path=tool, timeout=10.0)
    assert isinstance(backend, AmdBackend)
    snap = backend.sample()
    assert snap.backend == "amd" and len(snap.devices) == 4
    assert snap.devices[0].power_limit_watts == 290.0
    backend.close()


def test_amd_smi_end_to_end_with_afake_tool(tmp_path: Path) -> None:
    docs = {"metric": json.dumps(HAND_WRITTEN_METRIC), "static": json.dumps(HAND_WRITTEN_STATIC)}
    tool = fake_tool(tmp_path, "amd-smi", (
        "import sys\n"
        f"docs = {docs!r}\n"
        "print('WARNING: User is missing the following required groups: render.')\n"
        "print(docs[sys.argv[1]])\n"))
    backend = AmdBackend(tool_path=tool, timeout=10.0)
    (r,) = backend.sample().devices
    assert r.info.model == "AMD Instinct MI300X" and r.power_watts == 512.0
    assert [d.model for d in backend.discover()] == ["AMD Instinct MI300X"]


def test_unknown_source_is_rejected() -> None:
    with pytest.raises(BackendError, match="unknown source"):
        AmdBackend(source="magic")


def test_detect_on_a_fake_host_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPUOBS_HOST_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    assert detect() is False
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/kfd").touch()
    assert detect() is True

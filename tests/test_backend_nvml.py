"""The NVIDIA backend against real H100 captures: NVML replayed from a dump, ``nvidia-smi -q -x``
and ``--query-gpu`` CSVs. Expected values are written out by hand from the fixture files."""

from __future__ import annotations

import ast
import json
import re
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fixturepaths import NVIDIA_H100, read_fixture

from npuobs import schema
from npuobs.devices import registry
from npuobs.devices.base import BackendError
from npuobs.devices.nvml import (
    THROTTLE_BITS,
    NvmlBackend,
    parse_query_csv,
    parse_smi_xml,
    throttle_from_mask,
)

MIB = 1 << 20


class NvmlReplay:
    """A pynvml look-alike answering one GPU's calls from ``h100-nvml-dump.json``.

    A value written ``"ERR NVMLError_NotSupported(3)"`` raises ``NVMLError(3)`` as NVML did on
    that machine; a call whose value was not captured raises NOT_SUPPORTED too, since the only
    honest answer to "what would it have said" is "unknown".
    """

    NVML_TEMPERATURE_GPU = 0
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
    NVML_CLOCK_SM = 1
    NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0
    NVML_ERROR_NOT_SUPPORTED = 3

    class NVMLError(Exception):
        def __init__(self, value: int) -> None:
            super().__init__(value)
            self.value = value

        def __str__(self) -> str:
            return f"NVMLError({self.value})"

    def __init__(self, dump: dict[str, Any], count: int = 1, fail_init: bool = False) -> None:
        self.dump = dump
        self.count = count
        self.fail_init = fail_init
        self.initialized = False
        self.shutdowns = 0

    def _value(self, key: str) -> Any:
        if key not in self.dump:
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        value = self.dump[key]
        if isinstance(value, str) and value.startswith("ERR "):
            code = re.search(r"\((\d+)\)", value)
            raise self.NVMLError(int(code.group(1)) if code else 999)
        return value

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise self.NVMLError(12)  # NVML_ERROR_LIBRARY_NOT_FOUND
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        assert self.initialized, "NVML used before nvmlInit"
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        if index != 0:
            raise self.NVMLError(15)  # NVML_ERROR_GPU_IS_LOST
        return "gpu0"

    def nvmlSystemGetDriverVersion(self) -> str:
        return self._value("driver")

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self._value("cuda_driver")

    def nvmlDeviceGetName(self, h: str) -> str:
        return self._value("name")

    def nvmlDeviceGetUUID(self, h: str) -> str:
        return self._value("uuid")

    def nvmlDeviceGetVbiosVersion(self, h: str) -> str:
        return self._value("vbios")

    def nvmlDeviceGetTemperature(self, h: str, sensor: int) -> int:
        assert sensor == self.NVML_TEMPERATURE_GPU
        return self._value("temp_gpu")

    def nvmlDeviceGetTemperatureThreshold(self, h: str, kind: int) -> int:
        assert kind == self.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
        return self._value("temp_slowdown")

    def nvmlDeviceGetPowerUsage(self, h: str) -> int:
        return self._value("power_mw")

    def nvmlDeviceGetEnforcedPowerLimit(self, h: str) -> int:
        return self._value("power_limit_mw")

    def nvmlDeviceGetTotalEnergyConsumption(self, h: str) -> int:
        return self._value("energy_mj")

    def nvmlDeviceGetUtilizationRates(self, h: str) -> SimpleNamespace:
        return SimpleNamespace(**self._value("util"))

    def nvmlDeviceGetMemoryInfo(self, h: str) -> SimpleNamespace:
        return SimpleNamespace(**self._value("mem"))

    def nvmlDeviceGetClockInfo(self, h: str, clock: int) -> int:
        assert clock == self.NVML_CLOCK_SM
        return self._value("clock_sm")

    def nvmlDeviceGetMaxClockInfo(self, h: str, clock: int) -> int:
        assert clock == self.NVML_CLOCK_SM
        return self._value("clock_sm_max")

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: str) -> int:
        return self._value("throttle")

    def nvmlDeviceGetTotalEccErrors(self, h: str, error_type: int, counter: int) -> int:
        assert counter == self.NVML_VOLATILE_ECC
        kind = "uncorrected" if error_type == self.NVML_MEMORY_ERROR_TYPE_UNCORRECTED else "corrected"
        return self._value(f"ecc_{kind}_volatile")

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h: str) -> int:
        return self._value("retired_pages_pending")

    def nvmlDeviceGetRemappedRows(self, h: str) -> tuple[int, int, int, int]:
        value = self._value("remapped_rows")
        return ast.literal_eval(value) if isinstance(value, str) else tuple(value)

    def nvmlDeviceGetPcieReplayCounter(self, h: str) -> int:
        return self._value("pcie_replay")


def load_dump() -> dict[str, Any]:
    return json.loads(read_fixture("nvidia-h100/h100-nvml-dump.json"))


def h100_query_header() -> list[str]:
    return read_fixture("nvidia-h100/h100-query-idle.csv").splitlines()[0].split(", ")


# --- NVML --------------------------------------------------------------------------------------


def test_nvml_dump_maps_to_base_units() -> None:
    backend = NvmlBackend(nvml=NvmlReplay(load_dump()))
    (gpu,) = backend.sample().devices
    assert gpu.info.device == "0"
    assert gpu.info.vendor == "nvidia"
    assert gpu.info.model == "NVIDIA H100 80GB HBM3"
    assert gpu.info.uuid == "GPU-9cf3f98f-0c5d-5d3e-82c0-cd6ef60ee735"
    assert gpu.info.driver_version == "580.159.04"
    assert gpu.info.firmware_version == "96.00.DA.00.0C"  # VBIOS
    assert gpu.info.runtime_version == "13.0"  # CUDA driver API 13000
    assert gpu.up is True
    assert gpu.temperature_celsius == 37.0
    assert gpu.power_watts == pytest.approx(119.1)  # 119100 mW
    assert gpu.power_limit_watts == 700.0  # the H100 SXM cap
    assert gpu.energy_joules_total == pytest.approx(2190.357)  # 2190357 mJ
    assert gpu.utilization_ratio == 0.0
    assert gpu.memory_used_bytes == 503316480
    assert gpu.memory_total_bytes == 85520809984
    assert gpu.clock_hertz == 405e6
    # 0x1 = GPU idle: clocks are low because there is no work, not throttled
    assert gpu.throttled is False
    assert gpu.throttle_reasons == {r: False for r in schema.THROTTLE_REASONS}
    assert gpu.errors_total == {"ecc_uncorrected": 0}  # corrected ECC and PCIe replay not captured
    assert gpu.healthy is True  # remapped rows (0, 0, 0, 0): nothing pending, no failure


def test_values_nvml_did_not_give_are_none_not_zero() -> None:
    dump = load_dump()
    dump["temp_gpu"] = "ERR NVMLError_NotSupported(3)"
    dump["power_mw"] = "ERR NVMLError_Unknown(999)"
    dump["remapped_rows"] = "ERR NVMLError_NotSupported(3)"
    (gpu,) = NvmlBackend(nvml=NvmlReplay(dump)).sample().devices
    assert gpu.temperature_celsius is None
    assert gpu.power_watts is None
    assert gpu.healthy is None
    # never captured on the fixture machine
    assert gpu.temperature_throttle_threshold_celsius is None
    assert gpu.clock_max_hertz is None
    assert "ecc_corrected" not in gpu.errors_total and "pcie" not in gpu.errors_total
    # the rest still reads
    assert gpu.memory_total_bytes == 85520809984


def test_software_power_cap_under_load() -> None:
    # h100-query-load.csv, last row: 60 C, 697.84 W at the 700 W cap, 1380 MHz, reasons 0x4
    dump = load_dump() | {
        "temp_gpu": 60, "power_mw": 697840, "clock_sm": 1380, "throttle": 0x4, "temp_slowdown": 87,
        "clock_sm_max": 1980, "ecc_corrected_volatile": 0, "pcie_replay": 0,
    }
    (gpu,) = NvmlBackend(nvml=NvmlReplay(dump)).sample().devices
    assert gpu.throttled is True
    assert gpu.throttle_reasons == {"thermal": False, "power_cap": True, "hw_slowdown": False,
                                    "sw_slowdown": True}
    assert gpu.temperature_throttle_threshold_celsius == 87.0
    assert gpu.clock_max_hertz == 1980e6
    assert gpu.errors_total == {"ecc_corrected": 0, "ecc_uncorrected": 0, "pcie": 0}


def test_pending_row_remap_is_unhealthy() -> None:
    dump = load_dump() | {"remapped_rows": "(0, 1, 1, 0)"}
    (gpu,) = NvmlBackend(nvml=NvmlReplay(dump)).sample().devices
    assert gpu.healthy is False


def test_lost_gpu_is_down_and_the_other_still_reads() -> None:
    (ok, lost) = NvmlBackend(nvml=NvmlReplay(load_dump(), count=2)).sample().devices
    assert ok.up is True and ok.temperature_celsius == 37.0
    assert lost.up is False and lost.info.device == "1" and lost.temperature_celsius is None


def test_init_failure_without_nvidia_smi_is_a_backend_error_and_close_shuts_down(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendError, match=r"nvmlInit failed: NVMLError\(12\); nvidia-smi fallback: .*not found"):
        NvmlBackend(nvml=NvmlReplay(load_dump(), fail_init=True)).sample()
    replay = NvmlReplay(load_dump())
    backend = NvmlBackend(nvml=replay)
    assert [i.model for i in backend.discover()] == ["NVIDIA H100 80GB HBM3"]
    backend.close()
    backend.close()
    assert replay.shutdowns == 1


def test_throttle_mapping_covers_the_schema_and_ignores_non_throttling_bits() -> None:
    assert set(THROTTLE_BITS) == set(schema.THROTTLE_REASONS)
    for bit in (0x1, 0x2, 0x10, 0x100):  # idle, app clocks, sync boost, display clocks
        throttled, reasons = throttle_from_mask(bit)
        assert throttled is False and not any(reasons.values())
    assert throttle_from_mask(0x40)[1] == {"thermal": True, "power_cap": False, "hw_slowdown": True,
                                           "sw_slowdown": False}
    assert throttle_from_mask(None) == (None, {})


def test_replay_matches_the_real_bindings() -> None:
    import pynvml  # the dev extra installs nvidia-ml-py; no GPU is needed to import it
    for name in dir(NvmlReplay):
        if name.startswith("NVML_"):
            assert getattr(pynvml, name) == getattr(NvmlReplay, name), name
        elif name.startswith("nvml"):
            assert callable(getattr(pynvml, name)), name


def test_registry_builds_it_from_its_typed_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("npuobs.devices.nvml._import_pynvml", lambda: NvmlReplay(load_dump()))
    backend = registry.build("nvml", {"node": "n1", "tool_path": None, "timeout": "2", "smi_format": "csv"})
    assert backend.sample().backend == "nvml"
    with pytest.raises(BackendError, match="backend 'nvml': unknown option 'unknown_option'; valid options: node"):
        registry.build("nvml", {"unknown_option": 1})


# --- nvidia-smi -q -x -------------------------------------------------------------------------


def test_xml_h100_v13() -> None:
    (gpu,) = parse_smi_xml(read_fixture("nvidia-h100/h100-nvidia-smi-q.xml"))
    assert gpu.info.model == "NVIDIA H100 80GB HBM3"
    assert gpu.info.runtime_version == "13.0"
    assert gpu.info.firmware_version == "96.00.DA.00.0C"
    assert gpu.temperature_celsius == 37.0
    assert gpu.temperature_throttle_threshold_celsius is None  # v13 gives T.Limit margins only
    assert gpu.power_watts == pytest.approx(122.88)  # average_power_draw
    assert gpu.power_limit_watts == 700.0
    assert gpu.memory_total_bytes == 81559 * MIB == 85520809984  # same as NVML's total
    assert gpu.memory_used_bytes == 0
    assert gpu.clock_hertz == 1980e6 and gpu.clock_max_hertz == 1980e6
    assert gpu.throttled is False  # gpu_idle is the only active reason
    assert gpu.errors_total == {"ecc_corrected": 0, "ecc_uncorrected": 0, "pcie": 0}
    assert gpu.healthy is True
    assert gpu.energy_joules_total is None


def test_xml_t4_v11_old_layout() -> None:
    (gpu,) = parse_smi_xml(read_fixture("vendor/nvidia/nvidia-smi-q-x-tesla-t4-driver515.xml"))
    assert gpu.info.model == "Tesla T4" and gpu.info.runtime_version == "11.7"
    assert gpu.temperature_throttle_threshold_celsius == 93.0
    assert gpu.power_watts == pytest.approx(26.78)
    assert gpu.power_limit_watts == 70.0  # enforced_power_limit
    assert gpu.memory_used_bytes == 1032 * MIB
    assert gpu.clock_max_hertz == 1590e6
    assert gpu.throttle_reasons == {r: False for r in schema.THROTTLE_REASONS}


def test_xml_a100_mig_has_no_utilization() -> None:
    gpu, *instances = parse_smi_xml(read_fixture("vendor/nvidia/nvidia-smi-q-x-a100-sxm4-80gb-mig-driver535.xml"))
    assert len(instances) == 4  # its MIG instances follow it (test_mig_devices_in_nvidia_smi_xml)
    assert gpu.info.model == "NVIDIA A100-SXM4-80GB"
    assert gpu.utilization_ratio is None  # N/A in MIG mode, not 0
    assert gpu.temperature_throttle_threshold_celsius == 89.0
    assert gpu.healthy is None  # remapped_rows N/A, pending_retirement N/A


@pytest.mark.parametrize("text, message", [
    ("", "not well-formed"),
    ("<nvidia_smi_log></nvidia_smi_log>", "no <gpu>"),
    ("<html/>", "root element"),
    ("<nvidia_smi_log><gpu><temperature><gpu_temp>hot</gpu_temp></temperature></gpu></nvidia_smi_log>",
     "GPU 0"),
])
def test_xml_garbage(text: str, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        parse_smi_xml(text)


# --- nvidia-smi --query-gpu --format=csv ------------------------------------------------------


def test_csv_idle_with_header() -> None:
    (gpu,) = parse_query_csv(read_fixture("nvidia-h100/h100-query-idle.csv"))
    assert gpu.info.device == "0" and gpu.info.firmware_version == "96.00.DA.00.0C"
    assert gpu.temperature_celsius == 37.0
    assert gpu.power_watts == pytest.approx(122.93) and gpu.power_limit_watts == 700.0
    assert gpu.memory_total_bytes == 81559 * MIB
    assert gpu.clock_hertz == 1980e6
    assert gpu.throttled is False
    assert gpu.errors_total == {"ecc_uncorrected": 0}


def test_csv_load_rows_without_header() -> None:
    # one GPU sampled once a second: each line is one sample (one snapshot) of device 0
    lines = read_fixture("nvidia-h100/h100-query-load.csv").splitlines()
    rows = [r for line in lines for r in parse_query_csv(line, h100_query_header())]
    assert {r.info.device for r in rows} == {"0"}
    assert [r.temperature_celsius for r in rows] == [36, 52, 55, 56, 58, 58, 59, 59, 60, 60]
    assert all(r.power_watts <= r.power_limit_watts == 700.0 for r in rows)
    assert rows[0].throttled is False  # 0x1: still idle in the first second
    for r in rows[1:]:  # 0x4: software power cap
        assert r.throttled is True and r.throttle_reasons["power_cap"] is True
        assert r.throttle_reasons["thermal"] is False
    assert rows[-1].utilization_ratio == 1.0 and rows[-1].clock_hertz == 1380e6
    (after,) = parse_query_csv(read_fixture("nvidia-h100/h100-query-after.csv"), h100_query_header())
    assert after.temperature_celsius == 44.0 and after.throttled is False


def test_csv_nounits_p100() -> None:
    (gpu,) = parse_query_csv(read_fixture("vendor/nvidia/nvidia-smi-query-gpu-tesla-p100.csv"))
    assert gpu.info.model == "Tesla P100-PCIE-16GB"
    assert gpu.power_watts == pytest.approx(28.16)  # bare number, unit from the header
    assert gpu.memory_used_bytes == 0
    assert gpu.clock_hertz == 405e6
    assert gpu.throttled is None and gpu.throttle_reasons == {}  # not queried


def test_csv_wide_captures() -> None:
    (l40s,) = parse_query_csv(read_fixture("vendor/nvidia/nvidia-smi-query-gpu-l40s-idle-driver595.csv"))
    assert l40s.power_limit_watts == 350.0 and l40s.utilization_ratio == 1.0
    assert l40s.healthy is True  # remapped_rows.pending/failure = No
    (h200,) = parse_query_csv(read_fixture("vendor/nvidia/nvidia-smi-query-gpu-h200-mig-load-driver590.csv"))
    assert h200.utilization_ratio is None  # [N/A] under MIG, not 0
    assert h200.memory_used_bytes == 16959 * MIB
    assert h200.power_watts == pytest.approx(295.01)


@pytest.mark.parametrize("text, fields, message", [
    ("", None, "empty output"),
    ("foo, bar\n1, 2\n", None, "no known field"),
    ("name, temperature.gpu\n", None, "no GPU rows"),
    ("name, temperature.gpu\nT4\n", None, "1 values for 2 fields"),
    ("T4, warm\n", ["name", "temperature.gpu"], "row 0"),
    ("0, T4\n0, T4\n", ["index", "name"], "listed twice"),
    ("0, -3\n", ["index", "ecc.errors.corrected.volatile.total"], "negative"),
    ("0, -4\n", ["index", "clocks_event_reasons.active"], "not a bitmask"),
])
def test_csv_garbage(text: str, fields: list[str] | None, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        parse_query_csv(text, fields)


# --- fallback through nvidia-smi when pynvml is missing ----------------------------------------


def _fake_smi(tmp_path: Path, xml: Path, csv: Path) -> str:
    tool = tmp_path / "nvidia-smi"
    tool.write_text(f'#!/bin/sh\ncase "$1" in\n  -q) cat "{xml}" ;;\n  --query-gpu=*) cat "{csv}" ;;\n'
                    '  *) echo "bad args: $*" >&2; exit 2 ;;\nesac\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return str(tool)


@pytest.mark.parametrize("fmt, power", [("xml", 122.88), ("csv", 122.93)])
def test_fallback_runs_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fmt: str,
                                  power: float) -> None:
    monkeypatch.setattr("npuobs.devices.nvml._import_pynvml", lambda: None)
    tool = _fake_smi(tmp_path, NVIDIA_H100 / "h100-nvidia-smi-q.xml", NVIDIA_H100 / "h100-query-idle.csv")
    backend = NvmlBackend(tool_path=tool, smi_format=fmt)
    assert backend.source == "nvidia-smi"
    (gpu,) = backend.sample().devices
    assert gpu.power_watts == pytest.approx(power)
    assert gpu.info.uuid == "GPU-9cf3f98f-0c5d-5d3e-82c0-cd6ef60ee735"


def test_fallback_without_the_tool(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("npuobs.devices.nvml._import_pynvml", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BackendError, match="'nvidia-smi' not found"):
        NvmlBackend().sample()
    with pytest.raises(BackendError, match="smi_format"):
        NvmlBackend(smi_format="json")


def test_init_failure_falls_back_to_nvidia_smi_and_returns_to_nvml(tmp_path: Path) -> None:
    """Bindings installed but the library cannot initialise (NVML_ERROR_LIBRARY_NOT_FOUND): the
    readings come from nvidia-smi; once NVML initialises, from NVML again."""
    replay = NvmlReplay(load_dump(), fail_init=True)
    tool = _fake_smi(tmp_path, NVIDIA_H100 / "h100-nvidia-smi-q.xml", NVIDIA_H100 / "h100-query-idle.csv")
    backend = NvmlBackend(nvml=replay, tool_path=tool)
    (gpu,) = backend.sample().devices
    assert backend.source == "nvidia-smi" and "nvmlInit failed" in (backend.fallback_reason or "")
    assert gpu.power_watts == pytest.approx(122.88)  # the -q -x capture's value, not the dump's
    replay.fail_init = False
    (gpu,) = backend.sample().devices
    assert backend.source == "nvml" and backend.fallback_reason is None
    assert gpu.temperature_celsius == 37.0


def test_real_pynvml_without_a_driver_falls_back(tmp_path: Path) -> None:
    """The real bindings on a machine with no NVIDIA driver (CI): nvmlInit fails, nvidia-smi is used."""
    pynvml = pytest.importorskip("pynvml")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has a working NVML; the fallback cannot be shown here")
    tool = _fake_smi(tmp_path, NVIDIA_H100 / "h100-nvidia-smi-q.xml", NVIDIA_H100 / "h100-query-idle.csv")
    backend = NvmlBackend(tool_path=tool, smi_format="csv")
    (gpu,) = backend.sample().devices
    assert backend.source == "nvidia-smi" and gpu.power_watts == pytest.approx(122.93)


class NvmlMigReplay(NvmlReplay):
    """The H100 replay with MIG mode on and the four instances of a real H100 MIG host: GPU
    instances 2, 3, 9, 10 (compute instance 0), shared FB memory 40448/20096/9984/9984 MiB total
    and 26/17/9/9 MiB used, as ``nvidia-smi -q`` printed them in utkuozdemir/nvidia_gpu_exporter
    internal/captures/linux-x86_64__nvidia-h100-mig__590.48.01.txt (idle section). NVML's
    MIG slots are 7 on an H100; the empty ones raise NOT_FOUND like the real library."""

    INSTANCES = {0: (2, 40448, 26), 1: (3, 20096, 17), 2: (9, 9984, 9), 3: (10, 9984, 9)}

    def nvmlDeviceGetMigMode(self, h: str) -> tuple[int, int]:
        return (1, 1)

    def nvmlDeviceGetMaxMigDeviceCount(self, h: str) -> int:
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: str, slot: int) -> str:
        if slot not in self.INSTANCES:
            raise self.NVMLError(6)  # NVML_ERROR_NOT_FOUND
        return f"mig{slot}"

    def nvmlDeviceGetGpuInstanceId(self, h: str) -> int:
        return self.INSTANCES[int(h.removeprefix("mig"))][0]

    def nvmlDeviceGetComputeInstanceId(self, h: str) -> int:
        return 0

    def nvmlDeviceGetMemoryInfo(self, h: str) -> SimpleNamespace:
        if h.startswith("mig"):
            _, total, used = self.INSTANCES[int(h.removeprefix("mig"))]
            return SimpleNamespace(total=total * MIB, used=used * MIB, free=(total - used) * MIB)
        return super().nvmlDeviceGetMemoryInfo(h)

    def nvmlDeviceGetName(self, h: str) -> str:
        return super().nvmlDeviceGetName(h) + (" MIG" if h.startswith("mig") else "")

    def nvmlDeviceGetUUID(self, h: str) -> str:
        return f"MIG-instance-{h}" if h.startswith("mig") else super().nvmlDeviceGetUUID(h)


def test_mig_instances_are_devices_with_their_parent() -> None:
    readings = NvmlBackend(nvml=NvmlMigReplay(load_dump())).sample().devices
    assert [r.info.device for r in readings] == ["0", "0/gi2/ci0", "0/gi3/ci0", "0/gi9/ci0", "0/gi10/ci0"]
    gpu, first = readings[0], readings[1]
    assert gpu.info.parent == "" and gpu.temperature_celsius == 37.0
    assert {r.info.parent for r in readings[1:]} == {"0"}
    assert first.memory_total_bytes == 40448 * MIB and first.memory_used_bytes == 26 * MIB
    assert first.info.model == "NVIDIA H100 80GB HBM3 MIG" and first.info.uuid == "MIG-instance-mig0"
    assert first.info.driver_version == gpu.info.driver_version
    assert first.temperature_celsius is None and first.power_watts is None  # per-GPU readings only


def test_mig_devices_in_nvidia_smi_xml() -> None:
    """telegraf's a100-sxm4-v12.xml: one A100-80GB in MIG mode with four 14-SM instances."""
    readings = parse_smi_xml(read_fixture("vendor/nvidia/nvidia-smi-q-x-a100-sxm4-80gb-mig-driver535.xml"))
    assert [r.info.device for r in readings] == ["0", "0/gi3/ci0", "0/gi4/ci0", "0/gi5/ci0", "0/gi6/ci0"]
    assert all(r.info.parent == "0" and r.memory_total_bytes == 19968 * MIB for r in readings[1:])
    assert readings[1].memory_used_bytes == 12 * MIB
    assert readings[1].errors_total == {"ecc_uncorrected": 0}
    assert readings[0].utilization_ratio is None  # N/A in MIG mode

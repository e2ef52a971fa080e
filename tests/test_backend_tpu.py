"""TPU backend: tpu-info tables from the shared fixtures, checked value by value, and the backend
run end to end against a fake ``tpu-info`` (a real subprocess)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fixturepaths import fake_tool, fixture, read_fixture

from npuobs.devices import registry
from npuobs.devices.base import BackendError
from npuobs.devices.tpu import TpuBackend, detect, parse_tpu_info

GIB = 1 << 30


def test_static_v6e() -> None:
    readings = parse_tpu_info(read_fixture("vendor/google-tpu/tpu-info-static-v6e.txt"))
    assert [r.info.device for r in readings] == ["0", "1", "2", "3"]  # from /dev/vfio/N
    r0 = readings[0]
    assert r0.info.vendor == "google"
    assert r0.info.model == "TPU v6e"
    assert r0.info.runtime_version == "0.0.19.dev20250721+nightly"
    assert r0.up is True
    assert r0.utilization_ratio == pytest.approx(1.0)  # duty cycle 100.00%
    assert r0.memory_used_bytes == round(18.45 * GIB)
    assert r0.memory_total_bytes == round(31.25 * GIB)
    assert readings[1].memory_used_bytes == round(10.40 * GIB)
    # tpu-info reports none of these: absent, never zero
    assert r0.temperature_celsius is None and r0.power_watts is None and r0.clock_hertz is None
    assert dict(r0.errors_total) == {}


def test_streaming_uses_positions_not_global_chip_ids() -> None:
    # The runtime table numbers the chips 8, 9, 12, 13 (libtpu's global ids) on a host whose
    # chips are /dev/vfio/0..3: rows pair by position.
    readings = parse_tpu_info(read_fixture("vendor/google-tpu/tpu-info-streaming-v6e.txt"))
    assert [r.info.device for r in readings] == ["0", "1", "2", "3"]
    assert readings[0].memory_used_bytes == round(17.26 * GIB)
    assert readings[3].memory_used_bytes == round(9.26 * GIB)


def test_streaming_with_ansi_redraws_takes_the_last_frame() -> None:
    frame = read_fixture("vendor/google-tpu/tpu-info-streaming-v6e.txt")
    older = frame.replace("17.26 GiB", "1.00 GiB")
    colored = frame.replace("| ", "\x1b[36m|\x1b[0m ").replace("GiB", "\x1b[1mGiB\x1b[22m")
    stream = "\x1b[?25l\x1b[2J\x1b[H" + older + "\x1b[H\x1b[2J" + colored
    readings = parse_tpu_info(stream.replace("\n", "\r\n"))
    assert readings[0].memory_used_bytes == round(17.26 * GIB)


def test_v4_box_drawing_older_format() -> None:
    readings = parse_tpu_info(read_fixture("vendor/google-tpu/tpu-info-v4-4chip-tpu-info-0.1.txt"))
    assert [r.info.device for r in readings] == ["0", "1", "2", "3"]  # /dev/accel0..3
    assert readings[2].info.model == "TPU v4"
    assert readings[2].memory_total_bytes == round(31.75 * GIB)
    assert readings[2].memory_used_bytes == 0  # "0.00 GiB" is a real reading
    assert readings[2].utilization_ratio == 0.0


def test_v5p_libtpu_metrics_unavailable_leaves_values_absent() -> None:
    readings = parse_tpu_info(
        read_fixture("vendor/google-tpu/tpu-info-v5p-4chip-idle-libtpu-metrics-unavailable.txt"))
    assert len(readings) == 4
    for r in readings:
        assert r.up is True
        assert r.info.model == "TPU v5p" and r.info.runtime_version == "0.0.39"
        assert r.utilization_ratio is None
        assert r.memory_used_bytes is None and r.memory_total_bytes is None


def test_v5p_steady_load() -> None:
    readings = parse_tpu_info(read_fixture("vendor/google-tpu/tpu-info-v5p-4chip-steady-load.txt"))
    assert readings[0].utilization_ratio == pytest.approx(0.7111)
    assert readings[1].utilization_ratio == pytest.approx(0.7109)
    assert readings[0].memory_used_bytes == round(1.26 * GIB)
    assert readings[0].memory_total_bytes == round(95.74 * GIB)


def test_metric_mode_per_core_duty_cycle_and_hbm() -> None:
    readings = parse_tpu_info(read_fixture("vendor/google-tpu/tpu-info-metric-duty-cycle-hbm-v6e-8chip.txt"))
    assert [r.info.device for r in readings] == [str(i) for i in range(8)]
    assert readings[0].memory_used_bytes == round(29.50 * GIB)
    assert readings[7].memory_used_bytes == round(21.50 * GIB)
    assert all(r.utilization_ratio == pytest.approx(1.0) for r in readings)


def test_list_metrics_is_not_a_device_listing() -> None:
    with pytest.raises(BackendError, match="tpu-info"):
        parse_tpu_info(read_fixture("vendor/google-tpu/tpu-info-list-metrics.txt"))


@pytest.mark.parametrize("text", ["", "garbage\n", "| Chip | Type |\n| a |\n", "| Chip | Type |\n"])
def test_garbage_raises_backend_error(text: str) -> None:
    with pytest.raises(BackendError, match="tpu-info"):
        parse_tpu_info(text)


def test_sample_end_to_end_with_afake_tool(tmp_path: Path) -> None:
    src = fixture("vendor/google-tpu/tpu-info-v5p-4chip-steady-load.txt")
    body = f"import sys\nsys.stdout.buffer.write(open({str(src)!r}, 'rb').read())\n"
    tool = fake_tool(tmp_path, "tpu-info", body)
    backend = registry.create("tpu", node="n1", tool_path=tool)
    assert isinstance(backend, TpuBackend)
    snap = backend.sample()
    assert snap.backend == "tpu"
    assert len(snap.devices) == 4
    assert snap.devices[0].utilization_ratio == pytest.approx(0.7111)
    assert [d.device for d in backend.discover()] == ["0", "1", "2", "3"]


def test_hanging_tool_times_out_quickly(tmp_path: Path) -> None:
    tool = fake_tool(tmp_path, "tpu-info", "import time; time.sleep(60)\n")
    backend = TpuBackend(tool_path=tool, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(BackendError, match="timed out"):
        backend.sample()
    assert time.monotonic() - started < 5


def test_detect_on_a_fake_host_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPUOBS_HOST_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert detect() is False
    pci = tmp_path / "sys/bus/pci/devices/0000:00:05.0"
    pci.mkdir(parents=True)
    (pci / "vendor").write_text("0x8086\n")
    assert detect() is False  # an Intel function is not a TPU
    (pci / "vendor").write_text("0x1ae0\n")  # Google: a vfio-bound v5e/v5p/v6e chip
    assert detect() is True

"""The exporter serves a vendor backend exactly like the simulated one: same metric names, same labels.

Two real vendor paths go through the real exporter and HTTP server: NVML replaying the H100 dump
(the pynvml-shaped seam) and furiosa-smi as a real subprocess printing the published tables.
Their device series must use the schema's names and label sets, the same ones the sim backend's
series use; values come out in base units (e.g. the H100's 700 W limit).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from exporterkit import get, samples
from fixturepaths import FIXTURES
from test_backend_nvml import NvmlReplay, load_dump

from npuobs import schema
from npuobs.devices import registry
from npuobs.devices.nvml import NvmlBackend
from npuobs.exporter import Exporter, ExporterConfig
from npuobs.simulator.fleet import Fleet, FleetConfig

DEVICE_METRICS = {m.name for m in schema.METRICS if m.labels[:3] == schema.DEVICE_LABELS}


def _device_series(exporter: Exporter) -> dict[str, set[frozenset[str]]]:
    status, _, body = get(f"{exporter.url}/metrics")
    assert status == 200
    out: dict[str, set[frozenset[str]]] = {}
    for name, labels in samples(body):
        if name in DEVICE_METRICS:
            out.setdefault(name, set()).add(frozenset(k for k, _ in labels))
    return out


def _serve(backend: object, node: str = "n1") -> Exporter:
    return Exporter(ExporterConfig(backend="external", node=node, listen="127.0.0.1:0", interval=60,
                                   profile="debug"),
                    backend=backend).start()


@pytest.fixture(scope="module")
def sim_series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[frozenset[str]]]:
    state = tmp_path_factory.mktemp("sim")
    Fleet(FleetConfig.single_node(2, node="n1"), state).run(5)
    with Exporter(ExporterConfig(backend="sim", node="n1", state_dir=state, listen="127.0.0.1:0",
                                 interval=60, profile="debug")).start() as exporter:
        return _device_series(exporter)


def _assert_like_sim(vendor: dict[str, set[frozenset[str]]], sim: dict[str, set[frozenset[str]]]) -> None:
    assert vendor, "the vendor backend produced no device series"
    for name, label_sets in vendor.items():
        assert name in schema.BY_NAME
        assert label_sets <= sim.get(name, label_sets), f"{name}: labels {label_sets} differ from sim's {sim[name]}"
        for labels in label_sets:
            assert set(schema.BY_NAME[name].labels) == set(labels), name


def test_nvml_backend_is_served_like_the_simulator(sim_series: dict[str, set[frozenset[str]]]) -> None:
    with _serve(NvmlBackend(nvml=NvmlReplay(load_dump()), node="n1")) as exporter:
        series = _device_series(exporter)
        _, _, body = get(f"{exporter.url}/metrics")
    _assert_like_sim(series, sim_series)
    values = samples(body)
    limit = [v for (n, _), v in values.items() if n == "npu_power_limit_watts"]
    assert limit == [700.0]
    info = [dict(lab) for (n, lab), _ in values.items() if n == "npu_device_info"]
    assert info[0]["vendor"] == "nvidia" and info[0]["model"] == "NVIDIA H100 80GB HBM3"


def test_furiosa_cli_backend_is_served_like_the_simulator(tmp_path: Path,
                                                          sim_series: dict[str, set[frozenset[str]]]) -> None:
    vendor = FIXTURES / "vendor" / "furiosa"
    info = vendor / "furiosa-smi-info-format-full-4x-rngd-fw1.7.0.txt"
    status = vendor / "furiosa-smi-status-4x-rngd.txt"
    tool = tmp_path / "furiosa-smi"
    tool.write_text(
        "#!/bin/sh\n"
        f'if [ "$1 $2 $3" = "info --format full" ]; then cat "{info}"\n'
        f'elif [ "$1" = "status" ]; then cat "{status}"\n'
        'else echo "unknown command $*" >&2; exit 2; fi\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    with _serve(registry.create("furiosa", tool_path=str(tool), node="n1")) as exporter:
        series = _device_series(exporter)
    _assert_like_sim(series, sim_series)
    assert {"npu_temperature_celsius", "npu_power_watts", "npu_device_info"} <= set(series)

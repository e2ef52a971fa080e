"""``npuobs devices --json`` on every backend, each fed its vendor's published fixtures through a
stand-in tool (a real subprocess printing the fixture bytes), validated against the JSON Schema
shipped in the package; plus ``--option`` parsing and validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fixturepaths import FIXTURES, fake_tool

from npuobs.cli.main import main
from npuobs.devices import inventory
from npuobs.devices.base import DeviceInfo, DeviceReading, OpStats

pytestmark = pytest.mark.unit

# backend -> (tool name, [(argv substring, fixture relative to FIXTURES), ...]); the first rule
# whose substring occurs in the joined argv (" " + args) wins, "" matches anything.
TOOLS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "nvml": ("nvidia-smi", [(" -q -x", "nvidia-h100/h100-nvidia-smi-q.xml"),
                            ("--query-gpu", "nvidia-h100/h100-query-idle.csv")]),
    "furiosa": ("furiosa-smi", [(" info", "vendor/furiosa/furiosa-smi-info-format-full-4x-rngd-fw1.7.0.txt"),
                                (" status", "vendor/furiosa/furiosa-smi-status-4x-rngd.txt")]),
    "rebellions": ("rbln-stat", [(" --json", "vendor/rebellions/rbln-stat-json-8x-rbln-ca22-loaded.json"),
                                 ("", "vendor/rebellions/rbln-stat-table-1x-rbln-ca12.txt")]),
    "gaudi": ("hl-smi", [("", "vendor/intel-gaudi/hl-smi-table-8x-hl-225.txt")]),
    "amd": ("rocm-smi", [(" --json", "vendor/amd/rocm-smi-json-4x-mi100-rocm602.json")]),
    "tpu": ("tpu-info", [("", "vendor/google-tpu/tpu-info-v5p-4chip-steady-load.txt")]),
    "neuron": ("neuron-monitor", [("", "vendor/aws-neuron/neuron-monitor-record-trn1-2xlarge-no-runtime.json")]),
}


def stand_in(tmp_path: Path, name: str, rules: list[tuple[str, str]], fail: str = "") -> str:
    """A fake vendor tool: prints the fixture of the first matching rule; exits 1 on ``fail``."""
    table = [(needle, str(FIXTURES / rel)) for needle, rel in rules]
    return fake_tool(tmp_path, name, (
        "import sys\n"
        "argv = ' ' + ' '.join(sys.argv[1:])\n"
        f"if {fail!r} and {fail!r} in argv:\n"
        "    sys.exit('stand-in: this sub-command fails')\n"
        f"for needle, path in {table!r}:\n"
        "    if needle in argv:\n"
        "        data = open(path, 'rb').read()\n"
        "        sys.stdout.buffer.write(data if not path.endswith('.json') or b'\\n' in data.strip()\n"
        "                                else data + b'\\n')\n"
        "        sys.stdout.flush()\n"
        "        sys.exit(0)\n"
        "sys.exit('stand-in: no output for' + argv)\n"))


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["devices", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def validate(doc: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(inventory.schema(), format_checker=jsonschema.FormatChecker()).validate(doc)


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(inventory.schema())


@pytest.mark.parametrize("backend", sorted(TOOLS))
def test_devices_json_validates_for_every_backend(backend: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # no NVML library on this machine: the nvml backend must fall back to nvidia-smi on its own
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    name, rules = TOOLS[backend]
    tool = stand_in(tmp_path, name, rules)
    extra = ["--option", "period=1"] if backend == "neuron" else []
    code, out, err = run_cli(capsys, "--backend", backend, "--tool-path", tool, "--timeout", "20",
                             "--node", "n1", *extra, "--json")
    assert code == 0, err
    doc = json.loads(out)
    validate(doc)
    assert doc["backend"] == backend and doc["devices"]
    for dev in doc["devices"]:
        assert dev["node"] == "n1" and dev["backend"] == backend
        assert dev["model"] and not dev["model"].lower().startswith("0x")
    assert any(dev["readings"] for dev in doc["devices"])


def test_devices_json_values_are_base_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name, rules = TOOLS["furiosa"]
    code, out, _ = run_cli(capsys, "--backend", "furiosa", "--tool-path", stand_in(tmp_path, name, rules),
                           "--node", "n1", "--json")
    assert code == 0
    first = json.loads(out)["devices"][0]
    assert first["device"] == "0" and first["vendor"] == "furiosa" and first["model"] == "RNGD"
    assert first["versions"] == {"firmware": "1.7.0, 4dfed1852e7b"}
    assert first["readings"]["clock_hertz"] == 2e9
    assert first["readings"]["memory_total_bytes"] == int(47.5 * (1 << 30))
    assert "power_limit_watts" not in first["readings"]  # furiosa-smi does not report it: absent, not 0


def test_auto_inventory_with_one_failing_vendor(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """``--backend auto``: devices prefixed by their backend; a broken vendor is an entry in errors."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    name, rules = TOOLS["tpu"]
    stand_in(bin_dir, name, rules)
    fake_tool(bin_dir, "hl-smi", "import sys; sys.exit('hl-smi: driver not loaded')\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    code, out, err = run_cli(capsys, "--backend", "auto", "--option", "backends=tpu,gaudi",
                             "--timeout", "20", "--node", "n1", "--json")
    assert code == 0, err
    doc = json.loads(out)
    validate(doc)
    assert {d["backend"] for d in doc["devices"]} == {"tpu"}
    assert [d["device"] for d in doc["devices"]] == ["tpu:0", "tpu:1", "tpu:2", "tpu:3"]
    (error,) = doc["errors"]
    assert error["source"] == "gaudi" and "driver not loaded" in error["message"]


def test_a_failing_backend_still_prints_a_valid_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = fake_tool(tmp_path, "tpu-info", "import sys; sys.exit('no TPU')\n")
    code, out, _ = run_cli(capsys, "--backend", "tpu", "--tool-path", tool, "--node", "n1", "--json")
    assert code == 1
    doc = json.loads(out)
    validate(doc)
    assert doc["devices"] == [] and doc["errors"][0]["source"] == "tpu" and "no TPU" in doc["errors"][0]["message"]


def test_document_attaches_device_errors_and_keeps_counters() -> None:
    reading = DeviceReading(
        info=DeviceInfo("3", "sim", "SIM-1", driver_version="1.0"), up=False,
        resets_total={"driver": 2}, errors_total={"ecc_corrected": 1},
        ops={("matmul", "device"): OpStats(5, 0.5)}, throttle_reasons={"thermal": True}, throttled=True)
    errors = [inventory.SourceError("n1", "3", "unreadable"), inventory.SourceError("n1", "hl-smi -Q", "exit 1")]
    doc = inventory.document("sim", [("n1", "sim", reading)], errors, taken_at=0.0)
    validate(doc)
    (dev,) = doc["devices"]
    assert dev["errors"] == ["unreadable"] and dev["resets_total"] == {"driver": 2}
    assert dev["ops"] == [{"op": "matmul", "placement": "device", "count": 5, "seconds": 0.5}]
    assert dev["readings"] == {"throttled": True} and dev["versions"] == {"driver": "1.0"}
    assert doc["errors"] == [{"node": "n1", "source": "hl-smi -Q", "message": "exit 1"}]
    assert doc["taken_at"] == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize(("args", "message"), [
    (("--backend", "nvml", "--option", "colour=blue"), "--option colour: unknown option for backend 'nvml'"),
    (("--backend", "tpu", "--option", "timeout=soon"), "--option timeout='soon': invalid value"),
    (("--backend", "nvml", "--option", "smi_format"), "expected key=value"),
    (("--backend", "nvml", "--option", "smi_format=json"), "smi_format must be 'xml' or 'csv'"),
    (("--backend", "warp-drive"), "unknown backend 'warp-drive'"),
])
def test_bad_options_give_one_line_and_exit_2(args: tuple[str, ...], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, *args, "--json")
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_option_selects_the_csv_form(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    name, rules = TOOLS["nvml"]
    tool = stand_in(tmp_path, name, rules, fail=" -q -x")  # only the CSV form works
    code, out, err = run_cli(capsys, "--backend", "nvml", "--tool-path", tool, "--option", "smi-format=csv",
                             "--node", "n1", "--json")
    assert code == 0, err
    (gpu,) = json.loads(out)["devices"]
    assert gpu["model"] == "NVIDIA H100 80GB HBM3" and gpu["readings"]["power_watts"] > 0


def test_a_failing_sub_command_is_a_source_error_next_to_the_other_commands_devices(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``hl-smi -Q`` fails, the table still reads: 8 devices without the query's fields, one error."""
    tool = stand_in(tmp_path, "hl-smi", TOOLS["gaudi"][1], fail=" -Q")
    code, out, err = run_cli(capsys, "--backend", "gaudi", "--tool-path", tool, "--timeout", "20", "--node", "n1",
                             "--json")
    assert code == 0, err
    doc = json.loads(out)
    validate(doc)
    assert len(doc["devices"]) == 8 and doc["devices"][0]["readings"]["power_limit_watts"] == 600.0
    assert "clock_hertz" not in doc["devices"][0]["readings"]  # only the query has clocks
    (error,) = doc["errors"]
    assert error["source"] == "hl-smi -Q" and "this sub-command fails" in error["message"]


def test_mig_instances_are_devices_with_their_parent(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    xml = "vendor/nvidia/nvidia-smi-q-x-a100-sxm4-80gb-mig-driver535.xml"
    tool = stand_in(tmp_path, "nvidia-smi", [(" -q -x", xml)])
    code, out, err = run_cli(capsys, "--backend", "nvml", "--tool-path", tool, "--node", "n1", "--json")
    assert code == 0, err
    doc = json.loads(out)
    validate(doc)
    gpu, *instances = doc["devices"]
    assert "parent" not in gpu and "utilization_ratio" not in gpu["readings"]  # N/A in MIG mode
    assert [(d["device"], d["parent"]) for d in instances] == [
        ("0/gi3/ci0", "0"), ("0/gi4/ci0", "0"), ("0/gi5/ci0", "0"), ("0/gi6/ci0", "0")]
    assert instances[0]["readings"] == {"memory_used_bytes": 12 << 20, "memory_total_bytes": 19968 << 20}

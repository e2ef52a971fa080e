"""The ``npuobs`` command: help everywhere, and bad input gives one clear line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from npuobs.cli.main import SUBCOMMANDS

pytestmark = pytest.mark.integration  # runs the real `npuobs` command in subprocesses


def npuobs(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "npuobs.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_top_level_help_lists_every_subcommand() -> None:
    out = npuobs("--help")
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name: str) -> None:
    out = npuobs(name, "--help")
    assert out.returncode == 0, out.stderr
    assert "usage: npuobs" in out.stdout


def test_schema_table_lists_metrics() -> None:
    out = npuobs("schema")
    assert out.returncode == 0
    assert "npu_temperature_celsius" in out.stdout and "npu_inference_latency_seconds" in out.stdout


def test_sim_run_is_bounded_and_reports(tmp_path: Path) -> None:
    out = npuobs("sim", "run", "--devices", "4", "--seed", "1", "--duration", "20s", "--fast",
                 "--state-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "virtual time 20s / 20s (100%)" in out.stdout
    assert len(list((tmp_path / "nodes" / "node-0" / "devices").glob("*.json"))) == 4


@pytest.mark.parametrize(("args", "message"), [
    (("sim", "inject", "F9"), "unknown fault 'F9'"),
    (("sim", "inject", "F2", "--device", "9"), "unknown device '9'"),
    (("sim", "inject", "F2", "--node", "nope"), "unknown node 'nope'"),
    (("sim", "inject", "RESET", "--reason", "cosmic-rays"), "unknown reset reason"),
    (("sim", "inject", "F2", "--reason", "driver"), "--reason applies to RESET only"),
])
def test_bad_fault_arguments_give_one_clear_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    assert npuobs("sim", "run", "--devices", "2", "--duration", "2s", "--fast", "--quiet",
                  "--state-dir", str(tmp_path)).returncode == 0
    out = npuobs(*args, "--state-dir", str(tmp_path))
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_unreadable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    out = npuobs("sim", "status", "--state-dir", str(tmp_path / "missing"))
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    (tmp_path / "fleet.json").write_text("{not json")
    out = npuobs("sim", "inject", "F1", "--state-dir", str(tmp_path))
    assert out.returncode == 2 and "not valid JSON" in out.stderr and "Traceback" not in out.stderr


def test_unwritable_state_dir_for_run(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = npuobs("sim", "run", "--devices", "1", "--duration", "1s", "--state-dir", str(blocker / "sub"))
    assert out.returncode == 2 and "not writable" in out.stderr


def test_inject_then_clear_roundtrip(tmp_path: Path) -> None:
    npuobs("sim", "run", "--devices", "2", "--duration", "2s", "--fast", "--quiet", "--state-dir", str(tmp_path))
    out = npuobs("sim", "inject", "F2", "--device", "1", "--duration", "10m", "--state-dir", str(tmp_path))
    assert out.returncode == 0 and "injected F2" in out.stdout
    status = npuobs("sim", "status", "--state-dir", str(tmp_path))
    assert "F2" in status.stdout and "node-0/1" in status.stdout
    cleared = npuobs("sim", "clear", "F2", "--state-dir", str(tmp_path))
    assert "cleared 1 fault" in cleared.stdout
    assert "no active faults" in npuobs("sim", "status", "--state-dir", str(tmp_path)).stdout

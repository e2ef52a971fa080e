"""The generated alerting artifacts against the real tools: promtool and amtool."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from npuobs.alerting import conventions as cv
from npuobs.cli.main import main

REPO = Path(__file__).resolve().parent.parent
GENERATED = REPO / "alerts" / "generated"
UNIT_TESTS = sorted((REPO / "alerts" / "tests").glob("*.yaml"))


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603


def test_promtool_check_rules_is_clean(promtool_bin: str) -> None:
    result = _run([promtool_bin, "check", "rules", *(str(GENERATED / f) for f in cv.RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in (result.stdout + result.stderr).upper()


def test_promtool_unit_tests_pass(promtool_bin: str) -> None:
    """Every file under alerts/tests, run in parallel (they are independent and CPU-bound)."""
    assert len(UNIT_TESTS) >= 3
    procs = {path.name: subprocess.Popen(  # noqa: S603
        [promtool_bin, "test", "rules", path.name], cwd=path.parent,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for path in UNIT_TESTS}
    failures = []
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failures.append(f"--- {name}\n{out}")
    assert not failures, "\n".join(failures)


def test_amtool_check_config_is_clean(amtool_bin: str) -> None:
    result = _run([amtool_bin, "check-config", str(GENERATED / cv.ALERTMANAGER_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    (["severity=page", "alertname=NpuDeviceDown", "node=n1", "vendor=furiosa"], cv.RECEIVER_PAGE),
    (["severity=ticket", "alertname=NpuThermalThrottling", "node=n1"], cv.RECEIVER_TICKET),
    (["severity=page", "alertname=NpuAvailabilityErrorBudgetBurn", "slo=digits-mlp-availability"],
     cv.RECEIVER_PAGE),
    (["alertname=SomethingUnlabelled"], cv.RECEIVER_TICKET),  # no severity: a ticket, never dropped
])
def test_amtool_routes_severity_to_receiver(amtool_bin: str, labels: list[str], receiver: str) -> None:
    config = GENERATED / cv.ALERTMANAGER_FILE
    result = _run([amtool_bin, "config", "routes", "test", f"--config.file={config}",
                   f"--verify.receivers={receiver}", *labels])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_cli_check_passes_on_generated_dir(promtool_bin: str, amtool_bin: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "check", str(GENERATED)]) == 0
    assert capsys.readouterr().out.count("ok ") == 2


def test_cli_check_reports_broken_rules(promtool_bin: str, amtool_bin: str, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    for name in (*cv.RULE_FILES, cv.ALERTMANAGER_FILE):
        (tmp_path / name).write_text((GENERATED / name).read_text())
    broken = "groups:\n- name: x\n  rules:\n  - alert: Bad\n    expr: sum(\n"
    (tmp_path / cv.DEVICE_ALERTS_FILE).write_text(broken)
    assert main(["alerts", "check", str(tmp_path)]) == 1
    assert "FAIL promtool" in capsys.readouterr().out


def test_cli_check_without_tools_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["alerts", "check", str(GENERATED)]) == 2
    err = capsys.readouterr().err
    assert "promtool and amtool not found" in err and "apt-get install" in err


def test_cli_check_on_missing_dir_is_one_line_error(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "check", str(tmp_path / "nope")]) == 2
    assert "run `npuobs alerts generate` first" in capsys.readouterr().err

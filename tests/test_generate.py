"""``npuobs generate``: one command regenerates every committed artifact; ``--check`` names a stale one.

Runs on a copy of the checkout's inputs and outputs in a temporary directory, never on the real tree.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from npuobs import artifacts
from npuobs.cli.main import main

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The parts of the repository the generators read and write, copied."""
    root = tmp_path / "repo"
    for folder in ("alerts", "dashboards", "deploy"):
        shutil.copytree(REPO / folder, root / folder)
    (root / "docs").mkdir()
    shutil.copy2(REPO / "docs" / "metrics.md", root / "docs" / "metrics.md")
    return root


def test_the_repository_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--check", "--root", str(REPO)]) == 0, capsys.readouterr().err


EDITED = ("docs/metrics.md", "alerts/generated/device-alerts.yaml", "dashboards/oncall.json",
          "dashboards/provisioning/datasources/npuobs.yaml", "deploy/compose/alertmanager.yml",
          "deploy/manifests/kustomization.yaml")


LEFTOVER = "alerts/generated/old-alerts.yaml"


def test_check_names_each_hand_edited_artifact_and_generate_repairs_them(checkout: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """One file per stage (and per output folder) edited by hand and a leftover generated file: each is
    named, nothing else is; ``generate`` rewrites exactly those and removes the leftover."""
    for edited in EDITED:
        with (checkout / edited).open("a", encoding="utf-8") as f:
            f.write("# edited by hand\n")
    (checkout / LEFTOVER).write_text("groups: []\n", encoding="utf-8")
    assert main(["generate", "--check", "--root", str(checkout)]) == 1
    err = capsys.readouterr().err
    assert sorted(line.removeprefix("stale: ") for line in err.splitlines() if line.startswith("stale: ")) == \
        sorted([*EDITED, LEFTOVER])
    assert main(["generate", "--root", str(checkout)]) == 0
    assert sorted(capsys.readouterr().out.split()) == sorted([*EDITED, LEFTOVER])
    assert not (checkout / LEFTOVER).exists()
    for edited in EDITED:  # repaired: the repository's own (current, see above) bytes again
        assert (checkout / edited).read_bytes() == (REPO / edited).read_bytes(), edited


def test_a_threshold_in_the_spec_flows_into_the_generated_files(checkout: Path) -> None:
    spec = checkout / "alerts" / "slo.yaml"
    spec.write_text(spec.read_text(encoding="utf-8") + "thresholds:\n  cpu_fallback_max_ratio: 0.125\n",
                    encoding="utf-8")
    changed = {str(p) for p in artifacts.write(checkout)}
    assert {"alerts/generated/device-alerts.yaml", "alerts/generated/prometheusrule.yaml",
            "dashboards/oncall.json", "dashboards/debug.json"} <= changed
    assert "> 0.125" in (checkout / "alerts" / "generated" / "device-alerts.yaml").read_text(encoding="utf-8")
    # the rules reach the chart's copy and the manifests rendered from the chart in the same single pass
    assert {"deploy/helm/npuobs/files/prometheus-rules.yaml",
            "deploy/manifests/prometheusrule-npuobs-rules.yaml"} <= changed
    assert artifacts.stale(checkout) == []


def test_not_a_checkout_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--check", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not an npuobs checkout" in err and len(err.strip().splitlines()) == 1

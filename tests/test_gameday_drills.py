"""Drills on the real embedded stack (fleet, exporters, Prometheus, Alertmanager, PagerDuty sink).

One run covers both directions within the CI budget: F8 must be detected, paged and linked to its
runbook, while F1 runs against a deliberately broken NpuDeviceDown (it can never fire), so the game
day must call F1 missed and exit non-zero. The full catalogue (``npuobs gameday``) takes minutes;
its report is in docs/gameday.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from npuobs.alerting import conventions as cv
from npuobs.cli.main import main

REPO = Path(__file__).resolve().parent.parent


def _broken_rules(tmp_path: Path) -> Path:
    """The committed rules with NpuDeviceDown's expression changed to one that cannot be true."""
    out = tmp_path / "rules"
    out.mkdir()
    for name in cv.RULE_FILES:
        doc = yaml.safe_load((REPO / "alerts" / "generated" / name).read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == "NpuDeviceDown":
                    rule["expr"] = "npu_device_up == 2"
        (out / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def test_a_broken_rule_fails_the_game_day_and_a_good_one_passes(
        prometheus_bin: str, alertmanager_bin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, doc_path = tmp_path / "gameday.md", tmp_path / "gameday.json"
    code = main(["gameday", "--scenario", "F8", "--scenario", "F1", "--rules", str(_broken_rules(tmp_path)),
                 # for: capped at 5 s, a working NpuDeviceDown pages in ~20 s: 25 s is enough to call it missed
                 "--for-cap", "5s", "--warmup", "5s", "--detect-timeout", "25s", "--resolve-timeout", "5s",
                 "--report", str(report), "--json", str(doc_path)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert out.startswith("npuobs gameday: FAIL (F1)")

    doc = json.loads(doc_path.read_text())
    assert doc["passed"] is False
    f8, f1 = doc["scenarios"]
    assert (f8["name"], f8["verdict"], f1["name"], f1["verdict"]) == ("F8", "ok", "F1", "missed")
    page = f8["expected"][0]
    assert page["alertname"] == "NpuIncorrectOutputs" and page["alert"]["labels"]["severity"] == "page"
    assert page["delivered_to"] == cv.RECEIVER_PAGE
    assert page["runbook"] == cv.runbook_url(cv.DEFAULT_RUNBOOK_BASE_URL, "NpuIncorrectOutputs")
    assert page["alert"]["labels"]["node"] == "node-b" and page["alert"]["labels"]["device"] == "3"
    assert 0 < f8["detect_seconds"] < 25
    assert f1["expected"][0]["alert"] is None and f1["detect_seconds"] is None

    md = report.read_text()
    assert "### Coverage matrix" in md
    assert ("| F8 | NpuIncorrectOutputs | page -> pagerduty-page | NpuIncorrectOutputs/page -> pagerduty-page | ok |"
            in md)
    assert "| F1 | NpuDeviceDown | page -> pagerduty-page | nothing | missed |" in md

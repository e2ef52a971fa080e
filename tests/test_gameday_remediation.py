"""``npuobs gameday --remediate``: the report's shape (per scenario ``remediation: {...}``) and its CLI input
checks. The game day itself is run and its figures recorded in docs/remediation.md (it takes ~20 minutes)."""

from __future__ import annotations

import pytest

from npuobs.cli.main import main
from npuobs.gameday.remediation import (
    SCENARIOS,
    RemediationOptions,
    RunResult,
    ScenarioOutcome,
    remediation_json,
    remediation_markdown,
)

pytestmark = pytest.mark.unit


def outcomes() -> list[ScenarioOutcome]:
    f1 = ScenarioOutcome(SCENARIOS["F1"], RunResult(14.2, None, 0.0312), RunResult(13.9, 34.4, 0.0051))
    cap = ScenarioOutcome(SCENARIOS["capacity-guardrail"], None, RunResult(15.0, 30.0, 0.004),
                          {"result": "refused_capacity", "reason": "2 of 8 devices drained (25% > 20%)"})
    return [f1, cap]


def test_json_report_has_the_remediation_block_per_scenario() -> None:
    doc = remediation_json(outcomes(), RemediationOptions(), 900.0)
    f1, cap = doc["scenarios"]
    assert f1["remediation"] == {"action": "drain", "detect_seconds": 13.9, "mitigate_seconds_off": None,
                                 "mitigate_seconds_on": 34.4, "budget_spent_off": 0.0312, "budget_spent_on": 0.0051}
    assert cap["guardrail"]["kind"] == "capacity" and cap["guardrail"]["refused"]["result"] == "refused_capacity"
    assert cap["remediation"]["mitigate_seconds_off"] is None
    assert doc["passed"] is True and doc["wall_seconds"] == 900.0


def test_markdown_table_shows_off_and_on_side_by_side() -> None:
    md = remediation_markdown(outcomes(), RemediationOptions(window_seconds=120), 900.0)
    assert "| F1 | drain | 14s | > 120s (not mitigated) | 34s | 3.120 % | 0.510 % | ok |" in md
    assert "refused: 2 of 8 devices drained" in md


def test_remediate_rejects_drill_only_scenarios(capsys) -> None:
    assert main(["gameday", "--remediate", "--scenario", "F2"]) == 2
    assert "--remediate runs F1, F8, F3-rollout" in capsys.readouterr().err


def test_soak_counts_what_the_policy_would_do_for_fired_alerts() -> None:
    from types import SimpleNamespace

    from npuobs.gameday.remediation import soak_remediation

    fired = [SimpleNamespace(labels={"alertname": "NpuDeviceResets", "node": "n", "device": "1"}),
             SimpleNamespace(labels={"alertname": "NpuLatencyErrorBudgetBurn"}),
             SimpleNamespace(labels={"alertname": "NpuCpuFallbackHigh", "node": "n", "device": "0"})]
    assert soak_remediation(fired)["actions"] == 0  # the soak's usual tickets: no automated step
    fired.append(SimpleNamespace(labels={"alertname": "NpuDeviceDown", "node": "n", "device": "2"}))
    doc = soak_remediation(fired)
    assert doc["actions"] == 1 and doc["would_act"][0]["action"] == "drain"


def test_budget_falls_back_to_the_slo_spec_before_the_budget_rule_has_run() -> None:
    import dataclasses
    from types import SimpleNamespace

    from npuobs.config import Config
    from npuobs.gameday.remediation import _Loop

    config = Config.load()
    loop = _Loop.__new__(_Loop)
    loop.stack = SimpleNamespace(config=config)
    assert loop._spec_budget("availability") == pytest.approx(0.001)
    assert loop._spec_budget("accuracy") == pytest.approx(0.005)
    # the spec the stack's rules come from, not the packaged one
    spec = dataclasses.replace(config.spec, slos=tuple(
        dataclasses.replace(s, objective=99.0) if s.sli == "availability" else s for s in config.spec.slos))
    loop.stack = SimpleNamespace(config=dataclasses.replace(config, spec=spec))
    assert loop._spec_budget("availability") == pytest.approx(0.01)

"""The remediation policy: the shipped default loads from package data, errors name what is wrong,
``--explain`` says what would happen, and every runbook of an automated alert names its step."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from npuobs import schema
from npuobs.cli.main import main
from npuobs.remediation.policy import ACTIONS, PolicyError, load_policy, parse_policy

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]


def test_default_policy_is_dry_run_and_every_rule_targets_from_labels() -> None:
    policy = load_policy()
    assert policy.enabled is False
    assert policy.rule_for("NpuDeviceDown").action == "drain"
    assert policy.rule_for("NpuIncorrectOutputs").action == "drain"
    assert policy.rule_for("NpuAccuracyDeltaHigh").action == "rollback"
    assert policy.rule_for("NpuOutOfMemory").action == "reset"
    assert policy.rule_for("NpuDeviceDown").target_for({"node": "n", "device": "3"}) == {"node": "n", "device": "3"}
    assert set(ACTIONS) == set(schema.REMEDIATION_ACTIONS)


def test_rules_name_alerts_that_exist_and_runbooks_name_the_automated_step() -> None:
    runbooks = {p.stem for p in (ROOT / "runbooks").glob("Npu*.md")}
    for rule in load_policy().rules:
        assert rule.alert in runbooks, f"policy rule for unknown alert {rule.alert}"
        text = (ROOT / "runbooks" / f"{rule.alert}.md").read_text()
        assert "## Automated step" in text, f"runbooks/{rule.alert}.md lacks its 'Automated step' section"
        assert "npuobs remediate --explain" in text and "Manual fallback" in text


@pytest.mark.parametrize(("change", "says"), [
    ({"rules": [{"alert": "NpuDeviceDown", "action": "explode"}]}, "unknown action 'explode'"),
    ({"rules": [{"alert": "NpuDeviceDown", "action": "drain", "target": {"node": "${node}"}}]}, "needs target"),
    ({"rules": [{"alert": "NpuDeviceDown", "action": "drain", "undo": "reset",
                 "target": {"node": "a", "device": "b"}}]}, "does not undo drain"),
    ({"guardrails": {"max_drained_ratio": 2}}, "between 0 and 1"),
    ({"guardrails": {"max_actions_per_hour": {"galaxy": 1}}}, "unknown key(s) galaxy"),
    ({"enabled": "yes"}, "true or false"),
    ({"surprise": 1}, "unknown key(s) surprise"),
    ({"rules": [{"alert": "A", "action": "none"}, {"alert": "A", "action": "none"}]}, "second rule"),
    ({"rules": [{"alert": "NpuDeviceDown", "action": "drain", "target": {"node": "a", "device": "b"},
                 "verify": {"clears": "up", "within": "soon"}}]}, "not a duration"),
])
def test_bad_policies_are_one_clear_error(change: dict, says: str) -> None:
    doc = {"enabled": False, "rules": [], **change}
    with pytest.raises(PolicyError) as err:
        parse_policy(doc, "my.yaml")
    assert says in str(err.value) and "my.yaml" in str(err.value)


def test_explain_prints_action_guardrails_verification_and_manual_fallback(capsys) -> None:
    assert main(["remediate", "--explain", "NpuDeviceDown"]) == 0
    out = capsys.readouterr().out
    for words in ("drain", "dry-run", "maintenance silence", "20%", "verify: within", "undo with undrain",
                  "manual fallback"):
        assert words in out
    assert main(["remediate", "--explain", "NpuThermalThrottling"]) == 0
    assert "no rule" in capsys.readouterr().out


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(yaml.safe_dump({"rules": [{"alert": "X", "action": "explode"}]}))
    assert main(["remediate", "--policy", str(bad), "--explain", "X"]) == 2
    assert "unknown action" in capsys.readouterr().err
    assert main(["remediate", "--policy", str(tmp_path / "missing.yaml"), "--explain", "X"]) == 2
    assert main(["remediate", "--control-url", "http://127.0.0.1:1"]) == 2
    assert "--alertmanager is required" in capsys.readouterr().err
    assert main(["remediate", "--control-url", "http://127.0.0.1:1", "--alertmanager", "http://127.0.0.1:1"]) == 2
    assert "needs credentials" in capsys.readouterr().err


def test_the_oncall_dashboard_shows_remediation_annotations() -> None:
    import json

    from npuobs.remediation.notify import ANNOTATION_TAG

    board = json.loads((ROOT / "dashboards" / "oncall.json").read_text())
    queries = board["annotations"]["list"]
    assert any(q["target"]["type"] == "tags" and q["target"]["tags"] == [ANNOTATION_TAG] for q in queries)

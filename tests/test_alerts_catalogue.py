"""Static checks over the generated rules: names exist, every alert is complete, runbooks match."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from npuobs import schema
from npuobs.alerting import conventions as cv

REPO = Path(__file__).resolve().parent.parent
GENERATED = REPO / "alerts" / "generated"
RUNBOOKS = REPO / "runbooks"

# PromQL words that look like identifiers but are not metric names.
PROMQL_WORDS = frozenset("""
    sum min max avg count count_values stddev stdvar topk bottomk quantile group
    by without on ignoring group_left group_right and or unless bool offset
    rate irate increase delta idelta deriv resets changes predict_linear holt_winters
    histogram_quantile absent absent_over_time present_over_time
    max_over_time min_over_time avg_over_time sum_over_time count_over_time last_over_time quantile_over_time
    stddev_over_time stdvar_over_time
    clamp clamp_min clamp_max vector scalar time timestamp label_replace label_join sort sort_desc
    abs ceil floor round sqrt exp ln log2 log10 sgn inf nan
""".split())
# Series Prometheus itself creates for every target.
PROMETHEUS_SERIES = frozenset({"up"})
FAILURE_MODES = {*schema.FAILURE_MODES, cv.FAILURE_MODE_SLO, cv.FAILURE_MODE_SELF, cv.FAILURE_MODE_CAPACITY,
                 cv.FAILURE_MODE_COST}


def _rules() -> list[dict[str, Any]]:
    return [r for f in cv.RULE_FILES for g in yaml.safe_load((GENERATED / f).read_text())["groups"]
            for r in g["rules"]]


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects: strings, label matchers, ranges and label lists removed."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set(re.findall(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?=\s|\(|\)|$)", text))
    return {n for n in names if n not in PROMQL_WORDS}


def test_metric_name_parser() -> None:
    expr = ('sum by (node, le) (rate(npu_x_bucket{le="0.1",a=~"b|c"}[5m])) / on (node) '
            'group_left (vendor) (max_over_time(npu_y[1h]) > 0) unless absent(up{job="j"}) or vector(0.5)')
    assert metric_names(expr) == {"npu_x_bucket", "npu_y", "up"}


def test_every_metric_in_every_rule_exists() -> None:
    rules = _rules()
    recorded = {r["record"] for r in rules if "record" in r}
    known = schema.all_sample_names() | PROMETHEUS_SERIES | recorded
    unknown = {(r.get("alert") or r.get("record"), n) for r in rules for n in metric_names(r["expr"])
               if n not in known}
    assert not unknown, f"series neither the schema nor our recording rules produce: {unknown}"


def test_every_recording_rule_name_used_is_recorded() -> None:
    rules = _rules()
    recorded = {r["record"] for r in rules if "record" in r}
    level = re.compile(r"npuobs(_[a-z]+)?:")  # npuobs: or a level prefix, e.g. npuobs_cluster:
    used = {n for r in rules for n in metric_names(r["expr"]) if level.match(n)}
    assert used <= recorded, used - recorded
    assert all(level.match(n) for n in recorded)


def test_every_alert_is_complete() -> None:
    alerts = [r for r in _rules() if "alert" in r]
    assert alerts
    for rule in alerts:
        name, labels, ann = rule["alert"], rule["labels"], rule["annotations"]
        assert re.fullmatch(r"Npu[A-Z][A-Za-z0-9]+", name), name
        assert labels["severity"] in (cv.SEVERITY_PAGE, cv.SEVERITY_TICKET), name
        assert labels["failure_mode"] in FAILURE_MODES, name
        assert ann["summary"] and ann["description"], name
        assert ann["runbook_url"] == cv.runbook_url(cv.DEFAULT_RUNBOOK_BASE_URL, name)


def test_device_alert_descriptions_name_the_device() -> None:
    doc = yaml.safe_load((GENERATED / cv.DEVICE_ALERTS_FILE).read_text())
    for group in doc["groups"]:
        if group["name"] != cv.GROUP_DEVICE_ALERTS:
            continue
        for rule in group["rules"]:
            assert "{{ $labels.node }}" in rule["annotations"]["description"], rule["alert"]
            assert "{{ $labels.device }}" in rule["annotations"]["description"], rule["alert"]


def test_every_failure_mode_has_an_alert() -> None:
    covered = {r["labels"]["failure_mode"] for r in _rules() if "alert" in r}
    assert covered >= FAILURE_MODES


def _alert_names() -> set[str]:
    return {r["alert"] for r in _rules() if "alert" in r}


def test_every_alert_has_a_runbook_and_every_runbook_an_alert() -> None:
    runbooks = {p.stem for p in RUNBOOKS.glob("*.md") if p.name != "README.md"}
    alerts = _alert_names()
    assert alerts - runbooks == set(), "alerts without a runbook"
    assert runbooks - alerts == set(), "runbooks without an alert"


@pytest.mark.parametrize("name", sorted(_alert_names()))
def test_runbook_has_the_on_call_sections(name: str) -> None:
    text = (RUNBOOKS / f"{name}.md").read_text()
    assert text.startswith(f"# {name}\n")
    for section in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation", "## Escalation"):
        assert section in text, f"{name}.md lacks {section}"
    assert "```promql" in text, f"{name}.md has no PromQL to start diagnosis with"


def test_docs_table_lists_every_alert() -> None:
    doc = (REPO / "docs" / "alerting.md").read_text()
    missing = [n for n in sorted(_alert_names()) if f"`{n}`" not in doc]
    assert not missing, f"docs/alerting.md does not list {missing}"

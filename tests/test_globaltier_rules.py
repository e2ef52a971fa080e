"""The global tier's rule split, without an engine: pre-aggregations per cluster, SLO rules over them."""

from __future__ import annotations

import pytest

from npuobs.alerting import conventions as cv
from npuobs.alerting import globaltier
from npuobs.config import Config

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def config() -> Config:
    return Config.load()


def test_keep_cluster_adds_cluster_to_every_grouping() -> None:
    expr = "sum by (node, device) (x) and on (node) y unless on() z / ignoring(le) w + on (cluster, a) v"
    assert globaltier.keep_cluster(expr) == ("sum by (cluster, node, device) (x) and on (cluster, node) y "
                                             "unless on() z / ignoring(le) w + on (cluster, a) v")


def test_preaggregations_are_per_cluster_and_zero_filled_per_cluster(config: Config) -> None:
    group = globaltier.cluster_preaggregation_group(config.spec)
    names = {(r.name, r.labels["slo"]) for r in group.rules}
    assert (globaltier.preagg_record("total"), "digits-mlp-availability") in names
    for r in group.rules:
        assert r.expr.startswith(("sum by (cluster) (rate(", "(sum by (cluster) (rate(")), r.expr
        assert "vector(0)" not in r.expr  # a label-less 0 would match no cluster
        assert "[5m]" in r.expr and "{{window}}" not in r.expr


def test_global_slo_rules_read_only_preaggregations_and_keep_cluster(config: Config) -> None:
    *sli_parts, budget, alerts = globaltier.global_groups(config.spec, config.policy)
    # the SLI records run as independent groups, each named after its first record
    assert len(sli_parts) > 1 and all(g.name.startswith(cv.GROUP_SLI + "/") for g in sli_parts)
    sli_rules = [r for g in sli_parts for r in g.rules]
    raw = {"npu_inference_requests_total", "npu_inference_latency_seconds", "npu_golden_checks_total"}
    for rule in (*sli_rules, *budget.rules):  # the SLIs read only the pre-aggregations
        assert not any(m in rule.expr for m in raw), rule.expr
    for rule in alerts.rules:
        assert "on (model)" not in rule.expr and "by (node" not in rule.expr, rule.expr
    ratio = next(r for r in sli_rules if r.name == cv.slo_error_ratio("1h") and r.labels["sli"] == "availability")
    assert ratio.expr.count("sum by (cluster) (avg_over_time(npuobs_cluster:slo_") == 2
    assert ratio.expr.count("[1h]") == 2
    assert {a.name for a in alerts.alerts} >= set(cv.SLO_BURN_ALERTS.values())


RAW_DEVICE_SERIES = ("npu_device_up", "npu_inference_requests_total", "npu_golden_mismatches_total",
                     "npu_inference_latency_seconds", "npu_golden_checks_total")


def test_global_rules_read_no_raw_device_series_and_page_the_composite_from_the_record(config: Config) -> None:
    groups = globaltier.global_groups(config.spec, config.policy, config.thresholds)
    for rule in (r for g in groups for r in g.to_dict("")["rules"]):  # expressions and annotation queries
        assert not any(m in str(rule) for m in RAW_DEVICE_SERIES), rule
    alerts = [a for g in groups for a in g.alerts]
    down = [a for a in alerts if a.name == cv.ALERT_DEVICE_DOWN]
    models = {s.name for s in config.spec.slos if s.model}
    assert models and {a.labels["slo"] for a in down} == models  # one composite page per SLO tied to a model
    for a in down:
        assert a.severity == cv.SEVERITY_PAGE and a.for_ == "1m"
        for w in ("5m", "30m"):  # the default policy's page short windows
            assert f'group by (cluster, node, device, vendor, model) ({cv.DOWN_SERVING}{{window="{w}"}})' in a.expr
        assert "on (cluster, model) group_left" in a.expr
    pages = [a for a in alerts if a.name in cv.SLO_BURN_ALERTS.values() and a.severity == cv.SEVERITY_PAGE]
    assert pages and all(f"unless on (cluster, model)\n  group by (cluster, node, device, vendor, model) "
                         f"({cv.DOWN_SERVING}" in a.expr for a in pages)


def test_each_cluster_records_its_down_devices_per_page_short_window(config: Config) -> None:
    groups = {g.name: g for g in globaltier.cluster_groups(config.spec, config.policy, config.thresholds)}
    down = groups[globaltier.GROUP_CLUSTER_DOWN_SERVING]
    assert [(r.name, r.labels) for r in down.rules] == [(cv.DOWN_SERVING, {"window": "5m"}),
                                                        (cv.DOWN_SERVING, {"window": "30m"})]
    for r in down.rules:
        assert f'min_over_time(npu_device_up{{job="npuobs"}}[{r.labels["window"]}]) == 0' in r.expr
        assert r.expr.startswith("group by (cluster, node, device, vendor, model) (")
    # the cluster tier still tickets every down device (the global composite page folds it: amconfig)
    tickets = [a for g in groups.values() for a in g.alerts if a.name == cv.ALERT_DEVICE_DOWN]
    assert [a.severity for a in tickets] == [cv.SEVERITY_TICKET] and "unless" not in tickets[0].expr


def test_cluster_rules_keep_the_device_alerts(config: Config) -> None:
    groups = globaltier.cluster_groups(config.spec, config.policy, config.thresholds)
    alerts = {a.name for g in groups for a in g.alerts}
    assert {"NpuDeviceDown", "NpuIncorrectOutputs", "NpuExporterDown"} <= alerts
    for g in groups[1:]:
        for r in g.rules:
            assert "by (node" not in r.expr and "on (node" not in r.expr, r.expr


def test_alertmanager_groups_and_inhibits_within_a_cluster() -> None:
    from npuobs.alerting.amconfig import alertmanager_config

    config = alertmanager_config()
    assert config["route"]["group_by"][0] == "cluster"  # node-1 of two clusters: two incidents
    for rule in config["inhibit_rules"]:  # a device down in c1 must not silence c2's alerts
        assert "cluster" in rule["equal"], rule


def test_split_independent_keeps_rules_that_read_each_other_together() -> None:
    from npuobs.alerting.rules import Alert, Group, Record, split_independent

    a, b = Record("job:a:rate5m", "sum(rate(a[5m]))"), Record("job:b:ratio", "job:a:rate5m / 2")
    c, c2 = Record("job:c:count", "count(x)", {"kind": "x"}), Record("job:c:count", "count(y)", {"kind": "y"})
    page = Alert("BHigh", "job:b:ratio > 3", cv.SEVERITY_PAGE, "F1", "s", "d")
    parts = split_independent(Group("g", (a, c, b, c2, page), interval="30s"))
    assert [(p.name, p.rules, p.interval) for p in parts] == [
        ("g/job:a:rate5m", (a, b, page), "30s"), ("g/job:c:count/x", (c,), "30s"), ("g/job:c:count/y", (c2,), "30s")]
    reads_both = Record("job:d:sum", "sum(job:c:count)")
    assert [p.rules for p in split_independent(Group("g", (c, a, c2, reads_both)))] == [(c, c2, reads_both), (a,)]
    whole = Group("h", (a, b))
    assert split_independent(whole) == (whole,)


def test_cluster_device_recordings_run_as_independent_groups(config: Config) -> None:
    """Same rules, same order, one group per set of rules that read each other (the p99 and its spread)."""
    from npuobs.alerting.device_alerts import device_recording_group

    whole = device_recording_group(config.thresholds)
    parts = [g for g in globaltier.cluster_groups(config.spec, config.policy, config.thresholds)
             if g.name.startswith(f"{whole.name}/")]
    assert len(parts) > 3
    assert [r.name for g in parts for r in g.rules] == [r.name for r in whole.rules]
    p99 = ("npuobs:npu_inference_latency_seconds:p99_rate5m", "npuobs:npu_tenant_latency_p99_spread:ratio")
    together = {g.name for g in parts for r in g.rules if r.name in p99}
    assert len(together) == 1

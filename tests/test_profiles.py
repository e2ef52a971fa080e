"""Cardinality profiles: the schema's budget, the exporter's aggregation, and that rules and the
executive/on-call dashboards only read what the standard profile emits."""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.samples import Exemplar

from npuobs import cardinality, schema
from npuobs.alerting import conventions as cv
from npuobs.alerting.generate import build_rules
from npuobs.alerting.slo_spec import load_spec
from npuobs.config import Config
from npuobs.dashboards.promql import panel_queries
from npuobs.devices import registry
from npuobs.devices.source import SourceStatus
from npuobs.exporter import profiles
from npuobs.exporter.config import ConfigError, from_dict
from npuobs.exporter.families import device, selfmetrics, workload
from npuobs.schema import Profile
from npuobs.simulator.fleet import Fleet, FleetConfig

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Documented (docs/metrics.md, docs/exporter.md): on standard the latency histogram and the request
# counters are per node, so the p99-per-device recording and the noisy-neighbour spread become per node.
PER_NODE_BY_DESIGN = {"npu_inference_latency_seconds": {"device"}, "npu_inference_requests_total": {"device"}}
# `by (labels) (fn(metric` / `by (labels) (metric`: an aggregation applied directly to a series
_GROUPED = re.compile(r"by\s*\(([^)]*)\)\s*\(\s*(?:[a-z_]+\(\s*)?([a-zA-Z_:][a-zA-Z0-9_:]*)")


def schema_metrics_in(expr: str) -> set[schema.MetricSpec]:
    return {spec for name in _IDENT.findall(expr) if (spec := schema.resolve_sample_name(name)) is not None}


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Full-detail families of one simulated node with 8 devices and 4 tenants (canary included)."""
    state = tmp_path_factory.mktemp("sim")
    Fleet(FleetConfig.single_node(8, node="n1"), state).run(10)
    snap = registry.create("sim", state_dir=state, node="n1").sample()
    status = {"sim": SourceStatus(True, 0.01, 0, 1.0)}
    return (device.build("n1", snap, {}) + workload.build("n1", snap)
            + selfmetrics.build("n1", status, "test"))


def counts(fams: list) -> collections.Counter[str]:
    c: collections.Counter[str] = collections.Counter()
    for f in fams:
        spec = profiles.spec_of(f)
        assert spec is not None, f.name
        c[spec.name] += len(f.samples)
    return c


def test_standard_meets_the_budget_at_8_devices_and_4_tenants() -> None:
    shape = cardinality.Shape(devices=8, tenants=4)
    assert cardinality.per_device(Profile.STANDARD, shape) <= schema.STANDARD_SERIES_PER_DEVICE_MAX
    assert (cardinality.node_series(Profile.MINIMAL, shape) < cardinality.node_series(Profile.STANDARD, shape)
            < cardinality.node_series(Profile.DEBUG, shape))
    # the measurement of today's exporter: 131 series per device at debug detail
    assert cardinality.per_device(Profile.DEBUG, shape) > 131


def test_profiles_nest_and_only_debug_keeps_detail_labels() -> None:
    for spec in schema.METRICS:
        emitted = [spec.emitted_in(p) for p in Profile]
        assert emitted == sorted(emitted), f"{spec.name}: a larger profile must emit what a smaller one does"
        assert spec.labels_in(Profile.DEBUG) == spec.labels
        assert set(spec.labels_in(Profile.STANDARD)) == set(spec.labels) - set(spec.detail_labels)


def test_exporter_series_never_exceed_the_schema_bound(families: list) -> None:
    shape = cardinality.Shape(devices=8, tenants=4, collectors=1)
    for profile in Profile:
        got = counts(profiles.apply(families, profile))
        for name, n in got.items():
            assert n <= cardinality.series(schema.metric(name), profile, shape), (profile, name, n)
        assert not {n for n in got if not schema.metric(n).emitted_in(profile)}
    standard = sum(counts(profiles.apply(families, Profile.STANDARD)).values())
    assert standard <= 8 * schema.STANDARD_SERIES_PER_DEVICE_MAX
    assert sum(counts(families).values()) > 3 * standard  # the debug detail is what standard saves


def _values(fams: list, sample: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value for f in fams for s in f.samples if s.name == sample}


def test_aggregation_preserves_fleet_totals(families: list) -> None:
    standard = profiles.apply(families, Profile.STANDARD)
    for sample in ("npu_inference_requests_total", "npu_inference_latency_seconds_count",
                   "npu_golden_checks_total", "npu_resets_total", "npu_inference_queue_length"):
        full, agg = _values(families, sample), _values(standard, sample)
        assert sum(agg.values()) == pytest.approx(sum(full.values())), sample
        assert len(agg) < len(full), sample
    # per-node latency histogram keeps tenant and model (the SLOs exclude the canary tenant) but not device
    labels = {frozenset(dict(k)) for k in _values(standard, "npu_inference_latency_seconds_bucket")}
    assert labels == {frozenset({"node", "model", "tenant", "le"})}
    tenants = {dict(k)["tenant"] for k in _values(standard, "npu_inference_requests_total")}
    assert "canary" in tenants and len(tenants) == 4
    # max rollup: the worst device's accuracy loss survives aggregation over tenants
    full_acc = _values(families, "npu_accuracy_delta_ratio")
    agg_acc = _values(standard, "npu_accuracy_delta_ratio")
    assert max(agg_acc.values()) == max(full_acc.values())


def test_histogram_buckets_sum_and_keep_the_slowest_exemplar() -> None:
    h = HistogramMetricFamily("npu_inference_latency_seconds", "h", labels=list(schema.WORKLOAD_LABELS))
    h.add_metric(["n", "0", "m", "t"], [("0.1", 1.0, Exemplar({"trace_id": "a"}, 0.05)), ("+Inf", 2.0)], 0.3)
    h.add_metric(["n", "1", "m", "t"], [("0.1", 3.0, Exemplar({"trace_id": "b"}, 0.09)), ("+Inf", 5.0)], 0.7)
    (out,) = profiles.apply([h], Profile.STANDARD)
    by_name = {(s.name, s.labels.get("le")): s for s in out.samples}
    assert by_name[("npu_inference_latency_seconds_bucket", "0.1")].value == 4.0
    assert by_name[("npu_inference_latency_seconds_bucket", "0.1")].exemplar.labels == {"trace_id": "b"}
    assert by_name[("npu_inference_latency_seconds_bucket", "+Inf")].value == 7.0
    assert by_name[("npu_inference_latency_seconds_count", None)].value == 7.0
    assert by_name[("npu_inference_latency_seconds_sum", None)].value == pytest.approx(1.0)
    assert all("device" not in s.labels for s in out.samples)


def test_every_rule_reads_only_what_minimal_emits() -> None:
    """SLO rules, device alerts and their recordings work on minimal, hence on standard."""
    rules = build_rules(Config(spec=load_spec(ROOT / "alerts" / "slo.yaml")))
    read: set[schema.MetricSpec] = set()
    dashboards_read: set[schema.MetricSpec] = set()
    for groups in rules.by_file.values():
        for group in groups:
            for rule in group.rules:
                # the fleet pre-aggregations serve the dashboards, so they are judged as the dashboards are
                (dashboards_read if group.name == cv.GROUP_FLEET_RECORDINGS else read).update(
                    schema_metrics_in(rule.expr))
    assert read and dashboards_read, "no schema metric found in the rules"
    missing = sorted(s.name for s in read if not s.emitted_in(Profile.MINIMAL))
    assert not missing, f"rules read metrics the minimal profile does not emit: {missing}"
    missing = sorted(s.name for s in dashboards_read if not s.emitted_in(Profile.STANDARD))
    assert not missing, f"fleet recordings read metrics the standard profile does not emit: {missing}"
    # and group them only by labels minimal keeps: `sum by (node, device) (rate(x[5m]))` over an x that
    # minimal sums over device would silently match nothing
    for groups in rules.by_file.values():
        for group in groups:
            for rule in group.rules:
                for by, name in _GROUPED.findall(rule.expr):
                    spec = schema.resolve_sample_name(name)
                    if spec is None:
                        continue
                    labels = {x.strip() for x in by.split(",") if x.strip()} - {"cluster", "le"}
                    lost = (labels & set(spec.detail_labels)) - PER_NODE_BY_DESIGN.get(spec.name, set())
                    assert not lost, f"{rule.name}: groups {spec.name} by {sorted(lost)}, which minimal drops"


def test_executive_and_oncall_dashboards_read_only_what_standard_emits() -> None:
    """(The committed dashboards; tests/test_dashboards.py fails when they are stale.)"""
    # a panel reading a recorded series reads what its recording reads
    recorded = {rule.name: rule.expr for groups in build_rules(Config.load()).by_file.values()
                for group in groups for rule in group.rules if group.name == cv.GROUP_FLEET_RECORDINGS}

    def expand(expr: str) -> str:
        return " ".join([expr, *(expand(recorded[n]) for n in _IDENT.findall(expr) if n in recorded)])

    checked = 0
    for key in ("executive", "oncall"):
        board = json.loads((ROOT / "dashboards" / f"{key}.json").read_text())
        for q in panel_queries(board):
            for spec in schema_metrics_in(expand(q.expr)):
                checked += 1
                assert spec.emitted_in(Profile.STANDARD), f"{q.where}: {spec.name} is not in the standard profile"
    assert checked > 20


def test_profile_config_key_is_validated() -> None:
    assert from_dict({}).profile == "standard"
    assert from_dict({"profile": "debug"}).profile == "debug"
    with pytest.raises(ConfigError, match="profile must be one of minimal, standard, debug, got 'huge'"):
        from_dict({"profile": "huge"}, "cfg.yaml")

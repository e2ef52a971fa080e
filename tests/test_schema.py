"""The schema is the single source of truth: well-formed names, and docs generated from it are fresh."""

from __future__ import annotations

import re
from pathlib import Path

from npuobs import schema
from npuobs.docsgen import metrics_markdown

ROOT = Path(__file__).resolve().parents[1]
BASE_UNIT_SUFFIXES = ("_celsius", "_watts", "_bytes", "_ratio", "_seconds", "_hertz", "_joules")


def test_committed_metrics_doc_is_generated_from_schema() -> None:
    committed = (ROOT / "docs" / "metrics.md").read_text()
    fix = "npuobs schema --format markdown > docs/metrics.md"
    assert committed == metrics_markdown(), f"docs/metrics.md is stale: run `{fix}`"


def test_names_follow_prometheus_conventions() -> None:
    names = [m.name for m in schema.METRICS]
    assert len(names) == len(set(names))
    for m in schema.METRICS:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", m.name), m.name
        assert m.name.startswith(("npu_", "npuobs_")), m.name
        assert m.help.endswith("."), m.name
        if m.type is schema.MetricType.COUNTER:
            assert m.name.endswith("_total"), m.name
        else:
            assert not m.name.endswith("_total"), m.name
        if m.type is schema.MetricType.INFO:
            assert m.name.endswith("_info"), m.name
        if m.unit:
            stem = m.name.removesuffix("_total")
            assert stem.endswith(f"_{m.unit}"), f"{m.name}: unit {m.unit} not the name's suffix"


def test_every_metric_serves_a_failure_mode_sli_or_self_health() -> None:
    valid = set(schema.FAILURE_MODES) | set(schema.SLIS) | {"self"}
    for m in schema.METRICS:
        assert m.serves and set(m.serves) <= valid, m.name
    served = {s for m in schema.METRICS for s in m.serves}
    assert set(schema.FAILURE_MODES) <= served  # every failure mode has a signal


def test_versions_live_on_the_info_metric_only() -> None:
    version_labels = {"driver_version", "firmware_version", "runtime_version"}
    for m in schema.METRICS:
        if m.name != "npu_device_info":
            assert not version_labels & set(m.labels), m.name


def test_resolve_sample_name_maps_histogram_series_back() -> None:
    assert schema.resolve_sample_name("npu_inference_latency_seconds_bucket").name == "npu_inference_latency_seconds"
    assert schema.resolve_sample_name("npu_temperature_celsius_bucket") is None
    assert schema.resolve_sample_name("nope") is None


def test_derived_series_read_only_schema_metrics_and_keep_their_declared_labels() -> None:
    """Every metric a derived series' expression reads is in the schema, and its outer aggregation
    keeps exactly the labels it declares (dashboards filter on those)."""
    for derived in schema.DERIVED:
        for expr, static in derived.render("canary"):
            names = set(re.findall(r"\b(npu_[a-z_]+|npuobs[a-z_]*:[a-z0-9_:]+)", expr))
            for name in names:
                assert schema.resolve_sample_name(name) or name in schema.DERIVED_BY_NAME, (derived.name, name)
            outer = re.match(r"^\(?\s*(?:histogram_quantile\(\s*0\.99,\s*)?\w+ by \(([^)]*)\)", expr)
            assert outer, derived.name
            kept = tuple(label.strip() for label in outer.group(1).split(",") if label.strip() != "le")
            assert kept + tuple(static) == derived.labels, derived.name

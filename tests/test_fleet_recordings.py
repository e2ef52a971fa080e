"""The fleet pre-aggregations (``schema.DERIVED`` with ``fleet``) give the dashboards the values their
old raw queries gave: promtool evaluates the committed recording rules over one set of raw series,
then both the panel's committed query (reading the recordings) and the raw query the panel used to
run (built by the raw query helpers), with the same template-variable values, and both must equal
the value worked out by hand below.

Input (per second, over the 1-minute window; 15 s scrapes): user traffic on node n1 (cluster c1,
furiosa) puts 4 requests/s under 0.1 s and 1 more under 0.5 s; node n2 (cluster c2, rebellions)
1 request/s under 0.5 s; the canary tenant on n1 adds 10 slow requests/s above 0.5 s, which must
not count (with them, every quantile here would be the top finite bucket, 0.5).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from npuobs.alerting import conventions as cv
from npuobs.dashboards import executive, oncall
from npuobs.dashboards.promql import builtins, panel_queries, substitute, variable_defaults
from npuobs.dashboards.queries import Filters, quantile
from npuobs.thresholds import Thresholds

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent
LATENCY = "npu_inference_latency_seconds"
CANARY = f'tenant!="{Thresholds().canary_tenant}"'
STEPS = 40  # 15 s apart: 10 minutes of samples
EVAL = "10m"

# (cluster, node, tenant): increase per 15 s of the buckets le=0.1, le=0.5, le=+Inf
BUCKETS = {
    ("c1", "n1", "tenant-a"): (60, 75, 75),
    ("c2", "n2", "tenant-b"): (0, 15, 15),
    ("c1", "n1", Thresholds().canary_tenant): (0, 0, 150),
}
VENDORS = {("c1", "n1"): "furiosa", ("c2", "n2"): "rebellions"}


def _quantile(q: float, rates: dict[float, float]) -> float:
    """histogram_quantile by hand: linear interpolation inside the bucket holding rank q * total."""
    edges = sorted(rates)
    rank = q * rates[float("inf")]
    lower, below = 0.0, 0.0
    for le in edges:
        if rates[le] >= rank:
            return lower + (le - lower) * (rank - below) / (rates[le] - below)
        lower, below = le, rates[le]
    raise AssertionError("rank above +Inf")


def _expected(q: float, clusters: set[str], nodes: set[str]) -> float:
    rates = {0.1: 0.0, 0.5: 0.0, float("inf"): 0.0}
    for (cluster, node, tenant), steps in BUCKETS.items():
        if tenant == Thresholds().canary_tenant or cluster not in clusters or node not in nodes:
            continue
        for le, step in zip(rates, steps, strict=True):
            rates[le] += step / 15
    return _quantile(q, rates)


def _input_series() -> list[dict[str, str]]:
    series = []
    for (cluster, node, tenant), steps in BUCKETS.items():
        for le, step in zip(("0.1", "0.5", "+Inf"), steps, strict=True):
            labels = f'cluster="{cluster}",node="{node}",model="m",tenant="{tenant}",le="{le}"'
            series.append({"series": f"{LATENCY}_bucket{{{labels}}}", "values": f"0+{step}x{STEPS}"})
    for (cluster, node), vendor in VENDORS.items():
        labels = f'cluster="{cluster}",node="{node}",device="0",vendor="{vendor}"'
        series.append({"series": f"npu_device_up{{{labels}}}", "values": f"1x{STEPS}"})
    return series


def _board(name: str) -> dict:
    return json.loads((REPO / "dashboards" / f"{name}.json").read_text())


def _panel_exprs(board: dict, title: str) -> list[str]:
    return [q.expr for q in panel_queries(board) if q.panel_title == title]


# (board, panel, quantiles of its queries in order, raw filters, variables, clusters and nodes the value covers)
CASES = [
    ("executive", "Inference latency p95 / p99", (0.95, 0.99), executive.VARIABLES, {}, {"c1", "c2"}, {"n1", "n2"}),
    ("executive", "Inference latency p95 / p99", (0.95, 0.99), executive.VARIABLES, {"cluster": "c1"},
     {"c1"}, {"n1"}),
    ("oncall", "Live p99 latency", (0.99,), oncall.VARIABLES, {}, {"c1", "c2"}, {"n1", "n2"}),
    ("oncall", "Live p99 latency", (0.99,), oncall.VARIABLES, {"vendor": "furiosa"}, {"c1"}, {"n1"}),
    ("oncall", "Live p99 latency", (0.99,), oncall.VARIABLES, {"node": "n2"}, {"c2"}, {"n2"}),
]


def test_recorded_latency_panels_equal_the_raw_queries(promtool_bin: str, tmp_path: Path) -> None:
    tests = []
    for board_name, title, quantiles, variables, chosen, clusters, nodes in CASES:
        board = _board(board_name)
        values = {**variable_defaults(board), **builtins("1m", "15m"), **chosen}
        recorded = _panel_exprs(board, title)
        assert len(recorded) == len(quantiles) and all(cv.NODE_LATENCY_BUCKETS in e or cv.CLUSTER_LATENCY_BUCKETS in e
                                                       for e in recorded), recorded
        raw = [quantile(Filters(variables), q, LATENCY, ["model"], CANARY) for q in quantiles]
        exprs = []
        for q, new, old in zip(quantiles, recorded, raw, strict=True):
            # in microseconds, rounded: promtool compares floats exactly
            sample = [{"labels": "{model=\"m\"}", "value": round(_expected(q, clusters, nodes) * 1e6)}]
            exprs += [{"expr": f"round(1e6 * ({substitute(e, values)}))", "eval_time": EVAL, "exp_samples": sample}
                      for e in (new, old)]
        tests.append({"interval": "15s", "input_series": _input_series(), "promql_expr_test": exprs})
    doc = {"rule_files": [str(REPO / "alerts" / "generated" / cv.RECORDING_RULES_FILE)],
           "evaluation_interval": "15s", "tests": tests}
    (tmp_path / "fleet.test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = subprocess.run([promtool_bin, "test", "rules", "fleet.test.yaml"], cwd=tmp_path,  # noqa: S603
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_hand_computed_quantiles_are_distinct() -> None:
    """The cases would not tell a wrong filter from a right one if they all expected the same value."""
    values = {round(_expected(q, clusters, nodes), 6) for _, _, qs, _, _, clusters, nodes in CASES for q in qs}
    assert len(values) >= 4 and 0.5 not in values, values

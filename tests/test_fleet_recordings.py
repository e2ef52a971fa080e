"""The fleet pre-aggregations (``schema.DERIVED`` with ``fleet``) give the dashboards the values their
old raw queries gave: promtool evaluates the committed recording rules over one set of raw series,
then both the panel's committed query (reading the recordings) and the raw query the panel ran
before (built by the raw query helpers, or spelled out in :data:`RAW`), with the same template-variable
values, and both must equal the value worked out in Python from the inputs below.

Latency (per second, over the 1-minute window; 15 s scrapes): user traffic on node n1 (cluster c1,
furiosa) puts 4 requests/s under 0.1 s and 1 more under 0.5 s; node n2 (cluster c2, rebellions)
1 request/s under 0.5 s; the canary tenant on n1 adds 10 slow requests/s above 0.5 s, which must
not count (with them, every quantile here would be the top finite bucket, 0.5). Requests, energy and
queues: two models, a device serving nothing (its energy and device-hours must not count), canary
successes (they count for energy and cost per inference, not for throughput).
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
# (cluster, node, model, tenant, outcome): requests per 15 s
REQUESTS = {
    ("c1", "n1", "m", "tenant-a", "success"): 30,
    ("c1", "n1", "m", "tenant-a", "error"): 15,
    ("c2", "n2", "m", "tenant-b", "success"): 15,
    ("c2", "n2", "m2", "tenant-b", "success"): 15,
    ("c1", "n1", "m", Thresholds().canary_tenant, "success"): 45,
}
# (cluster, node, device): joules per 15 s, and the model it serves (queue length) or None
DEVICES = {
    ("c1", "n1", "0"): (1500, ("m", 7)),
    ("c1", "n1", "1"): (750, None),
    ("c2", "n2", "0"): (3000, ("m", 2)),
    ("c2", "n2", "1"): (1500, ("m2", 1)),
}
# the executive's raw queries before the recordings (queries.quantile still writes the latency ones)
_SERVED = 'group by (node, device) (npu_inference_queue_length{cluster=~"$cluster",model=~"$model"})'
_WATTS = ('sum((rate(npu_energy_joules_total{cluster=~"$cluster"}[$__rate_interval]) and on (node, device) '
          f"{_SERVED}))")
_SUCCESSES = ('sum (rate(npu_inference_requests_total{cluster=~"$cluster",model=~"$model",outcome="success"}'
              "[$__rate_interval]))")
RAW = {
    "Throughput by outcome": 'sum by (outcome) (rate(npu_inference_requests_total{cluster=~"$cluster",'
                             'model=~"$model",tenant!="canary"}[$__rate_interval]))',
    "Successful inferences": 'sum (rate(npu_inference_requests_total{cluster=~"$cluster",model=~"$model",'
                             'outcome="success",tenant!="canary"}[$__rate_interval]))',
    "Energy per inference": f"{_WATTS} / {_SUCCESSES}",
    "Cost per inference": f"({_WATTS} * $cost_per_kwh / 3600000 + count((npu_device_up{{cluster=~\"$cluster\"}} and "
                          f"on (node, device) {_SERVED})) * $cost_per_device_hour / 3600) / {_SUCCESSES}",
    "Queue length": 'sum by (node, device) ((npu_inference_queue_length{cluster=~"$cluster",node=~"$node",'
                    'device=~"$device",model=~"$model"} and on (node, device) npu_device_up{cluster=~"$cluster",'
                    'node=~"$node",vendor=~"$vendor",device=~"$device"}))',
}


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


def _rate(step: float) -> float:
    return step / 15


def _executive(title: str, chosen: dict[str, str], prices: dict[str, str]) -> dict[str, float]:
    """The executive's request, energy and cost panels by hand (with ``chosen`` cluster and model)."""
    def picked(cluster: str, model: str) -> bool:
        return cluster == chosen.get("cluster", cluster) and model == chosen.get("model", model)

    canary = Thresholds().canary_tenant
    req = [(k, _rate(v)) for k, v in REQUESTS.items() if picked(k[0], k[2])]
    serving = [(k, v) for k, v in DEVICES.items() if v[1] and picked(k[0], v[1][0])]
    watts = sum(_rate(joules) for _, (joules, _) in serving)
    successes = sum(r for k, r in req if k[4] == "success")
    if title == "Throughput by outcome":
        out: dict[str, float] = {}
        for k, r in req:
            if k[3] != canary:
                out[f'{{outcome="{k[4]}"}}'] = out.get(f'{{outcome="{k[4]}"}}', 0) + r
        return out
    if title == "Successful inferences":
        return {"{}": sum(r for k, r in req if k[4] == "success" and k[3] != canary)}
    if title == "Energy per inference":
        return {"{}": watts / successes}
    cost = watts * float(prices["cost_per_kwh"]) / 3.6e6 + len(serving) * float(prices["cost_per_device_hour"]) / 3600
    return {"{}": cost / successes}


def _queues(chosen: dict[str, str]) -> dict[str, float]:
    vendor = chosen.get("vendor")
    return {f'{{node="{node}",device="{device}"}}': queue[1] for (cluster, node, device), (_, queue) in DEVICES.items()
            if queue and vendor in (None, VENDORS[cluster, node])}


def _input_series() -> list[dict[str, str]]:
    series: list[dict[str, str]] = []
    for (cluster, node, tenant), steps in BUCKETS.items():
        for le, step in zip(("0.1", "0.5", "+Inf"), steps, strict=True):
            labels = f'cluster="{cluster}",node="{node}",model="m",tenant="{tenant}",le="{le}"'
            series.append({"series": f"{LATENCY}_bucket{{{labels}}}", "values": f"0+{step}x{STEPS}"})
    for (cluster, node, model, tenant, outcome), step in REQUESTS.items():
        labels = f'cluster="{cluster}",node="{node}",model="{model}",tenant="{tenant}",outcome="{outcome}"'
        series.append({"series": f"npu_inference_requests_total{{{labels}}}", "values": f"0+{step}x{STEPS}"})
    for (cluster, node, device), (joules, queue) in DEVICES.items():
        where = f'cluster="{cluster}",node="{node}",device="{device}"'
        device_labels = f'{where},vendor="{VENDORS[cluster, node]}"'
        series += [{"series": f"npu_device_up{{{device_labels}}}", "values": f"1x{STEPS}"},
                   {"series": f"npu_energy_joules_total{{{device_labels}}}", "values": f"0+{joules}x{STEPS}"}]
        if queue:
            series.append({"series": f'npu_inference_queue_length{{{where},model="{queue[0]}"}}',
                           "values": f"{queue[1]}x{STEPS}"})
    return series


def _promtool(promtool_bin: str, tmp_path: Path, exprs: list[dict]) -> None:
    doc = {"rule_files": [str(REPO / "alerts" / "generated" / cv.RECORDING_RULES_FILE)],
           "evaluation_interval": "15s",
           "tests": [{"interval": "15s", "input_series": _input_series(), "promql_expr_test": exprs}]}
    (tmp_path / "fleet.test.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = subprocess.run([promtool_bin, "test", "rules", "fleet.test.yaml"], cwd=tmp_path,  # noqa: S603
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _same(new: str, old: str, expected: dict[str, float]) -> list[dict]:
    """Both queries, in micro-units rounded (promtool compares floats exactly), against ``expected``."""
    assert expected, "a case must expect data"
    samples = [{"labels": labels, "value": round(v * 1e6)} for labels, v in expected.items()]
    return [{"expr": f"round(1e6 * ({e}))", "eval_time": EVAL, "exp_samples": samples} for e in (new, old)]


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
    exprs = []
    for board_name, title, quantiles, variables, chosen, clusters, nodes in CASES:
        board = _board(board_name)
        values = {**variable_defaults(board), **builtins("1m", "15m"), **chosen}
        recorded = _panel_exprs(board, title)
        assert len(recorded) == len(quantiles) and all(cv.NODE_LATENCY_BUCKETS in e or cv.CLUSTER_LATENCY_BUCKETS in e
                                                       for e in recorded), recorded
        raw = [quantile(Filters(variables), q, LATENCY, ["model"], CANARY) for q in quantiles]
        for q, new, old in zip(quantiles, recorded, raw, strict=True):
            exprs += _same(substitute(new, values), substitute(old, values),
                           {'{model="m"}': _expected(q, clusters, nodes)})
    _promtool(promtool_bin, tmp_path, exprs)


@pytest.mark.parametrize("chosen", [{}, {"cluster": "c1"}, {"model": "m"}, {"model": "m2"}])
def test_recorded_request_energy_and_cost_panels_equal_the_raw_queries(promtool_bin: str, tmp_path: Path,
                                                                       chosen: dict[str, str]) -> None:
    board = _board("executive")
    values = {**variable_defaults(board), **builtins("1m", "15m"), **chosen}
    exprs = []
    for title in ("Throughput by outcome", "Successful inferences", "Energy per inference", "Cost per inference"):
        [new] = _panel_exprs(board, title)
        assert "npuobs_cluster:" in new and "rate(" not in new, new
        exprs += _same(substitute(new, values), substitute(RAW[title], values), _executive(title, chosen, values))
    _promtool(promtool_bin, tmp_path, exprs)


@pytest.mark.parametrize("chosen", [{}, {"vendor": "rebellions"}])
def test_recorded_queue_panel_equals_the_raw_query(promtool_bin: str, tmp_path: Path, chosen: dict[str, str]) -> None:
    board = _board("oncall")
    values = {**variable_defaults(board), **builtins("1m", "15m"), **chosen}
    [new] = _panel_exprs(board, "Queue length")
    assert cv.DEVICE_QUEUE_LENGTH in new and " and " not in new, new
    _promtool(promtool_bin, tmp_path, _same(substitute(new, values), substitute(RAW["Queue length"], values),
                                            _queues(chosen)))


def test_the_hand_computed_quantiles_are_distinct() -> None:
    """The cases would not tell a wrong filter from a right one if they all expected the same value."""
    values = {round(_expected(q, clusters, nodes), 6) for _, _, qs, _, _, clusters, nodes in CASES for q in qs}
    assert len(values) >= 4 and 0.5 not in values, values

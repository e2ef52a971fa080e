"""Executive dashboard: are users served well, at what cost, on how big and healthy a fleet.

SLO attainment and error budget per SLO, p95/p99 latency, throughput, accuracy delta, energy and
cost per inference, fleet size and health (the SRE guide's executive panels plus the budget view).
Fleet-wide by design: the only filters are cluster and model.
"""

from __future__ import annotations

from grafanalib import core as g

from npuobs.alerting import conventions as cv
from npuobs.alerting.slo_rules import BUDGET_INTERVAL
from npuobs.dashboards import panels as p
from npuobs.dashboards.panels import Q
from npuobs.dashboards.queries import Filters, or_zero, recorded_quantile
from npuobs.durations import format_duration, parse_duration

VARIABLES = ("cluster", "model")
JOULES_PER_KWH = 3_600_000


def budget_record(selector: str) -> str:
    """A record of the SLO budget group, held across its evaluation interval.

    That group is evaluated every few minutes (its rules scan the whole SLO period), as long as
    Prometheus' 5-minute lookback: without ``last_over_time`` a graph would show gaps between
    evaluations.
    """
    return f"last_over_time({selector}[{format_duration(2 * parse_duration(BUDGET_INTERVAL))}])"


def build(options: p.Config) -> g.Dashboard:
    f = Filters(VARIABLES)
    t = options.thresholds
    spec = options.spec
    board = p.Board()
    no_canary = f'tenant!="{t.canary_tenant}"'
    success = 'outcome="success"'

    board.row("Service level objectives")
    periods = sorted({slo.period for slo in spec.slos})
    attainment = [Q(f"1 - {budget_record(f.sel(cv.slo_error_ratio(period)))}", "{{slo}}") for period in periods]
    objectives = [p.by_name(slo.name, thresholds={"mode": "absolute", "steps": p.below(slo.objective / 100)})
                  for slo in spec.slos]
    board.add(p.stat(
        f"SLO attainment over the SLO period ({', '.join(periods)})", attainment, "percentunit",
        "Share of good events over each SLO's whole period (1 - error ratio). Green while at or above the "
        "objective from alerts/slo.yaml, red below it.",
        decimals=3, overrides=objectives, thresholds=p.steps("blue")), w=12, h=6)
    remaining = budget_record(f.sel(cv.SLO_ERROR_BUDGET_REMAINING))
    board.add(p.stat(
        "Error budget remaining", [Q(remaining, "{{service}} · {{slo}}")], "percentunit",
        "Share of each SLO's error budget left in its period; NpuErrorBudgetExhausted fires at 0 (red).",
        thresholds=p.below(0), decimals=1,
        links=[p.runbook_link(options, cv.ALERT_BUDGET_EXHAUSTED)]), w=12, h=6)
    board.add(p.timeseries(
        "Error budget remaining over time", [Q(remaining, "{{service}} · {{slo}}")], "percentunit",
        "Trend of the budget left per SLO: a steady slope down is a slow burn worth a ticket.",
        thresholds=p.below(0)), w=24, h=7)

    board.row("User experience")
    # fleet-wide panels read per-cluster pre-aggregations (docs/dashboards.md), not every node's raw series;
    # the latency buckets are user traffic's (canary excluded in the rule)
    requests, latency = cv.CLUSTER_REQUESTS, cv.CLUSTER_LATENCY_BUCKETS
    board.add(p.timeseries(
        "Inference latency p95 / p99", [
            Q(recorded_quantile(f, 0.95, latency, ["model"]), "{{model}} p95"),
            Q(recorded_quantile(f, 0.99, latency, ["model"]), "{{model}} p99"),
        ], "s",
        "End-to-end latency (queueing included) of user traffic. The dashed line is the latency SLI "
        "threshold: requests slower than it spend the latency SLO's budget.",
        thresholds=p.above(t.latency_slo_seconds)), w=12)
    board.add(p.timeseries(
        "Throughput by outcome", [Q(f"sum by (outcome) ({f.vec(requests, no_canary)})", "{{outcome}}")], "reqps",
        "User inference requests per second by outcome (success, error, oom, rejected), stacked: "
        "the top of the stack is the offered load.", stacked=True), w=12)
    board.add(p.stat(
        "Successful inferences", [Q(f"sum({f.vec(requests, f'{success},{no_canary}')})", "per second")], "reqps",
        "Total successful user inferences per second across the fleet."), w=6, h=5)
    board.add(p.stat(
        "Accuracy delta vs FP32", [Q(f"max by (model) ({f.vec('npu_accuracy_delta_ratio')})", "{{model}}")],
        "percentunit",
        "Worst device's accuracy loss against the FP32 reference on the canary set (quantization error). "
        "Red above the budget NpuAccuracyDeltaHigh alerts on.",
        thresholds=p.above(t.accuracy_delta_max_ratio), decimals=2,
        links=[p.runbook_link(options, "NpuAccuracyDeltaHigh")]), w=6, h=5)

    # Energy and device-hours cover every inference a device runs (canary checks too); with a model selected,
    # only the devices serving it (the recordings are per model).
    served = f"sum({f.vec(requests, success)})"
    watts = f"sum({f.vec(cv.CLUSTER_SERVING_ENERGY)})"
    devices = f"sum({f.vec(cv.CLUSTER_SERVING_DEVICES)})"
    board.add(p.stat(
        "Energy per inference", [Q(f"{watts} / {served}", "per inference")], "joule",
        "Device energy divided by successful inferences (board power only; host and cooling excluded)."), w=6, h=5)
    cost = (f"({watts} * $cost_per_kwh / {JOULES_PER_KWH} + {devices} * $cost_per_device_hour / 3600)"
            f" / {served}")
    board.add(p.stat(
        "Cost per inference", [Q(cost, "per inference")], options.currency_unit,
        "Energy at $cost_per_kwh per kWh plus device time at $cost_per_device_hour per device-hour "
        "(idle devices included), divided by successful inferences. Edit the prices in the "
        "variables bar.", decimals=6), w=6, h=5)

    board.row("Fleet")
    board.add(p.stat(
        "Devices", [Q(f"count({f.sel('npu_device_up')})", "known"), Q(f"sum({f.sel('npu_device_up')})", "up"),
                    Q(f"sum({f.sel('npu_device_healthy')})", "healthy")], "none",
        "Devices the exporters know, answer their backend, and report healthy.", graph=False), w=8, h=5)
    board.add(p.stat(
        "Devices down", [Q(or_zero(f"count({f.sel('npu_device_up')} == 0)"), "down")], "none",
        "Devices not answering their backend; each one pages as NpuDeviceDown after 2 minutes.",
        thresholds=p.above(1), links=[p.runbook_link(options, "NpuDeviceDown")], graph=False), w=4, h=5)
    board.add(p.timeseries(
        "Utilization by vendor", [Q(f"avg by (vendor) ({f.sel('npu_utilization_ratio')})", "{{vendor}}")],
        "percentunit",
        "Average compute utilization per vendor; above the dashed line latency suffers (SRE guide: 60-80 % "
        "is typical).", thresholds=p.above(t.utilization_high_ratio, "orange")), w=12, h=5)

    variables = [p.datasource_variable(options), *p.device_variables(VARIABLES),
                 p.textbox("cost_per_kwh", "Price per kWh", f"{options.kwh_price:g}",
                           "Energy price used by the cost-per-inference panel"),
                 p.textbox("cost_per_device_hour", "Price per device-hour", f"{options.device_hour_price:g}",
                           "Amortised hardware / rental price of one NPU per hour")]
    return p.dashboard(p.EXECUTIVE, board, variables,
                       "SLOs, error budgets, latency, throughput, accuracy, energy and cost of the NPU fleet.",
                       [p.dashboard_link(p.ONCALL), p.dashboard_link(p.DEBUG)], ["executive"])

"""On-call dashboard: what is burning, what is firing, which device, and where the runbook is.

Live p99 latency, burn rates against the alert policy's thresholds, firing and pending alerts with
runbook links, device up/health, utilization, queues, CPU fallback, errors, resets, OOMs and
throttling. Every per-device series links to the debug dashboard for that node and device.
"""

from __future__ import annotations

from grafanalib import core as g

from npuobs import schema
from npuobs.alerting import conventions as cv
from npuobs.alerting.burnrate import windows_for
from npuobs.alerting.slo_spec import SLO
from npuobs.dashboards import panels as p
from npuobs.dashboards.panels import Q
from npuobs.dashboards.queries import Filters, or_zero, recorded_quantile, sum_increase

VARIABLES = ("cluster", "node", "vendor", "device", "model")
DEVICE_LEGEND = "{{node}}/{{device}}"


def burn_rate(f: Filters, slos: tuple[SLO, ...], window: str) -> str:
    """Error ratio over ``window`` in units of each SLO's error budget (1 = exactly on budget).

    Divides by the budget from the spec, as the burn-rate alerts do, instead of joining the
    ``slo_error_budget`` record: that one lives in the 5-minute budget group and would leave the
    panel empty for up to 5 minutes after a Prometheus restart, exactly when on-call looks.
    """
    terms = []
    for slo in slos:
        selector = f.sel(cv.slo_error_ratio(window), f'slo="{slo.name}"')
        terms.append(f"{selector} / {slo.error_budget:g}")
    return "\nor\n".join(terms)


def burn_panels(options: p.Config, f: Filters) -> list[g.TimeSeries]:
    """One panel per window pair of the policy: both windows against the pair's burn factor."""
    spec = options.spec
    by_period: dict[str, tuple[SLO, ...]] = {}
    for slo in spec.slos:
        by_period[slo.period] = (*by_period.get(slo.period, ()), slo)
    runbooks = [p.runbook_link(options, cv.SLO_BURN_ALERTS[sli]) for sli in sorted({s.sli for s in spec.slos})]
    pairs = windows_for(options.policy, spec.slos[0].period)
    out = []
    for i, pair in enumerate(pairs):
        queries = []
        for period, slos in sorted(by_period.items()):
            w = windows_for(options.policy, period)[i]
            queries += [Q(burn_rate(f, slos, w.long), f"{{{{slo}}}} {w.long}"),
                        Q(burn_rate(f, slos, w.short), f"{{{{slo}}}} {w.short}")]
        out.append(p.timeseries(
            f"Burn rate {pair.long} / {pair.short}: {pair.severity} above {pair.factor:g}x", queries, "none",
            f"Error-budget burn rate of each SLO over {pair.long} and {pair.short} (1 = spending the budget "
            f"exactly over the SLO period). The {options.policy} policy raises a {pair.severity} when both "
            f"windows exceed {pair.factor:g}x (dashed line). Windows scale with SLO periods other than 30d.",
            thresholds=p.above(pair.factor), links=runbooks, axis_label="x error budget"))
    return out


def build(options: p.Config) -> g.Dashboard:
    f = Filters(VARIABLES)
    t = options.thresholds
    board = p.Board()
    debug = [p.drilldown(p.DEBUG, "Debug ${__field.labels.node} / ${__field.labels.device}")]

    board.row("SLOs and alerts")
    board.add(p.timeseries(
        "Live p99 latency", [Q(recorded_quantile(f, 0.99, cv.NODE_LATENCY_BUCKETS, ["model"]), "{{model}} p99")],
        "s",
        f"p99 of user inference latency (canary excluded) over {schema.AGGREGATION_WINDOW}, from the per-node "
        "pre-aggregation so node and vendor filters still apply; above the dashed line (the latency SLI "
        "threshold) requests spend the latency SLO's budget.",
        thresholds=p.above(t.latency_slo_seconds),
        links=[p.runbook_link(options, cv.SLO_BURN_ALERTS["latency"])]), w=8)
    firing = 'ALERTS{alertstate="firing",severity="%s"}'
    board.add(p.stat(
        "Firing alerts", [Q(or_zero(f"count({firing % cv.SEVERITY_PAGE})"), cv.SEVERITY_PAGE),
                          Q(or_zero(f"count({firing % cv.SEVERITY_TICKET})"), cv.SEVERITY_TICKET)], "none",
        "Alerts firing now, by severity (pages go to PagerDuty's high-urgency route, tickets to low).",
        thresholds=p.above(1), graph=False), w=4)
    runbook_field = p.by_name("alertname", links=[{
        "title": "Runbook: ${__value.text}", "targetBlank": True,
        "url": cv.runbook_url(options.runbook_base_url, "${__value.text}")}])
    board.add(p.table(
        "Alerts firing and pending", [Q("ALERTS")],
        "Every alert Prometheus holds, pending (waiting out its 'for') or firing. Click an alert name for "
        "its runbook.", hidden=["__name__"], overrides=[runbook_field]), w=12)
    for panel in burn_panels(options, f):
        board.add(panel, w=12, h=7)

    board.row("Devices")
    board.add(p.stat(
        "Device up", [Q(f.sel("npu_device_up"), DEVICE_LEGEND)], "none",
        "Whether each device answers its backend. A device down for 2 minutes pages (NpuDeviceDown).",
        thresholds=p.below(1), mappings=p.UP_DOWN, color_mode="background", graph=False,
        links=[p.runbook_link(options, "NpuDeviceDown"), p.runbook_link(options, "NpuDeviceAbsent")],
        data_links=debug), w=12, h=6)
    board.add(p.stat(
        "Unhealthy devices", [Q(or_zero(f"count({f.sel('npu_device_healthy')} == 0)"), "unhealthy")], "none",
        "Devices up but reporting a fatal error state (e.g. uncorrected ECC errors).",
        thresholds=p.above(1), graph=False, links=[p.runbook_link(options, "NpuDeviceErrorRateHigh")]), w=4, h=6)
    job = options.spec.fleet.exporter_job
    board.add(p.stat(
        "Exporters up", [Q(f'sum(up{{job="{job}"}})', "up"), Q(f'count(up{{job="{job}"}})', "scraped")], "none",
        "npuobs exporters Prometheus scrapes successfully; a node whose exporter is down is unobserved.",
        graph=False, links=[p.runbook_link(options, "NpuExporterDown")]), w=4, h=6)
    board.add(p.stat(
        "Throttled devices", [Q(f"sum({f.sel('npu_throttled')})", "throttled")], "none",
        "Devices running below their maximum clock for any reason right now.",
        thresholds=p.above(1, "orange"), links=[p.runbook_link(options, "NpuThermalThrottling")]), w=4, h=6)

    board.add(p.timeseries(
        "Utilization", [Q(f.sel("npu_utilization_ratio"), DEVICE_LEGEND)], "percentunit",
        "Compute busy fraction per device; above the dashed line queues and tail latency grow.",
        thresholds=p.above(t.utilization_high_ratio, "orange"), data_links=debug), w=8)
    board.add(p.timeseries(
        "Queue length", [Q(f"sum by (node, device) ({f.vec(cv.DEVICE_QUEUE_LENGTH)})", DEVICE_LEGEND)],
        "none", "Requests waiting in each device's runtime queue; a growing queue precedes latency burn.",
        links=[p.runbook_link(options, "NpuNoisyNeighbour")], data_links=debug), w=8)
    board.add(p.timeseries(
        "CPU fallback ratio", [Q(f.sel(cv.CPU_FALLBACK_RATIO), DEVICE_LEGEND)], "percentunit",
        "Share of graph ops run on the host CPU (5m); NpuCpuFallbackHigh tickets above the dashed line.",
        thresholds=p.above(t.cpu_fallback_max_ratio), links=[p.runbook_link(options, "NpuCpuFallbackHigh")],
        data_links=debug), w=8)

    board.add(p.timeseries(
        "Device errors", [Q(f.sel(cv.DEVICE_ERROR_RATE), DEVICE_LEGEND)], "cps",
        "Uncorrected ECC, runtime, timeout and PCIe errors per second (5m); NpuDeviceErrorRateHigh pages "
        "above the dashed line.",
        thresholds=p.above(t.device_error_rate_max_per_second),
        links=[p.runbook_link(options, "NpuDeviceErrorRateHigh")], data_links=debug), w=6)
    board.add(p.timeseries(
        "Resets in the last hour", [Q(sum_increase(f, "npu_resets_total", "1h", ["node", "device", "reason"]),
                                      DEVICE_LEGEND + " {{reason}}")], "none",
        "Device resets over the trailing hour by reason; any reset tickets, the dashed line is a reset "
        "storm that pages (NpuDeviceResets).",
        thresholds=p.above(t.resets_per_hour_max), links=[p.runbook_link(options, "NpuDeviceResets")],
        data_links=debug), w=6)
    board.add(p.timeseries(
        "OOM events (10m)", [Q(sum_increase(f, "npu_oom_events_total", "10m", ["node", "device"]),
                               DEVICE_LEGEND)], "none",
        "Device memory allocation failures over the trailing 10 minutes; any OOM tickets (NpuOutOfMemory).",
        thresholds=p.above(1), links=[p.runbook_link(options, "NpuOutOfMemory")], data_links=debug), w=6)
    board.add(p.timeseries(
        "Throttle reasons", [Q(f"sum by (node, device, reason) ({f.sel('npu_throttle_reason_active')})",
                               DEVICE_LEGEND + " {{reason}}")], "none",
        "Active throttle reasons per device (1 = active). Thermal throttling longer than "
        f"{t.throttle_for} tickets (NpuThermalThrottling).",
        links=[p.runbook_link(options, "NpuThermalThrottling")], data_links=debug), w=6)

    variables = [p.datasource_variable(options), *p.device_variables(VARIABLES)]
    return p.dashboard(p.ONCALL, board, variables,
                       "Burn rates, alerts and device health for whoever holds the pager; per-device series "
                       "link to the debug dashboard.",
                       [p.dashboard_link(p.EXECUTIVE), p.dashboard_link(p.DEBUG)], ["oncall"],
                       annotations=p.remediation_annotations())

"""Debug dashboard: one node or device, down to operators, tenants, sensors and versions.

Per-operator execution time and the host-vs-device op split (CPU fallback), model load time and
cold starts, temperature against the throttle threshold, power against the limit, memory, clocks,
driver/firmware/runtime versions, per-tenant latency (noisy neighbours) and latency exemplars
linked to their traces. Pick a node and device in the variables bar, or arrive from an on-call
panel's data link with both already set.

Queries filter by the labels the ``debug`` exporter profile emits; a panel that reads a series
``standard`` exports without its per-device detail (or not at all) says so in its description.
"""

from __future__ import annotations

import attr
from grafanalib import core as g

from npuobs.alerting import conventions as cv
from npuobs.dashboards import panels as p
from npuobs.dashboards.panels import Q
from npuobs.dashboards.queries import DEBUG_NOTE, Filters, needs_debug, quantile, sum_increase, sum_rate
from npuobs.schema import Profile

VARIABLES = ("cluster", "node", "vendor", "device", "model")
DEV = "{{node}}/{{device}}"
EXEMPLAR_TRACE_LABEL = "trace_id"


def trace_link_override(options: p.Config) -> dict[str, object]:
    """A data link on each latency exemplar's trace ID, to the trace in the configured trace UI."""
    return {"matcher": {"id": "byName", "options": EXEMPLAR_TRACE_LABEL, "scope": "exemplar"},
            "properties": [{"id": "links", "value": [{
                "title": "Open trace ${__value.raw}", "targetBlank": True,
                "url": options.trace_url.replace("{trace_id}", "${__value.raw}")}]}]}


def build(options: p.Config) -> g.Dashboard:
    f = Filters(VARIABLES, Profile.DEBUG)
    t = options.thresholds
    board = p.Board()
    latency = "npu_inference_latency_seconds"

    board.row("Latency and tenants")
    board.add(p.timeseries(
        "Latency p50 / p99 with exemplars", [
            Q(quantile(f, 0.99, latency, ["node", "device"]), f"{DEV} p99", exemplar=True),
            Q(quantile(f, 0.5, latency, ["node", "device"]), f"{DEV} p50"),
        ], "s",
        "Latency of every tenant's requests on the selected devices. Exemplar dots mark the slowest recent "
        "request of each bucket; hover one and follow 'Open trace' to its trace. Dashed: latency SLI threshold.",
        thresholds=p.above(t.latency_slo_seconds), overrides=[trace_link_override(options)]), w=12)
    board.add(p.timeseries(
        "p99 latency per tenant", [Q(f.sel(cv.LATENCY_P99), f"{DEV} {{{{tenant}}}}")], "s",
        "p99 per tenant (5m). One tenant far slower than the others on the same device is a noisy "
        "neighbour (F7).", thresholds=p.above(t.latency_slo_seconds)), w=12)
    board.add(p.timeseries(
        "Tenant p99 spread", [Q(f.sel(cv.TENANT_P99_SPREAD), f"{DEV} {{{{model}}}}")], "none",
        "Slowest tenant's p99 over the fastest's on each device; NpuNoisyNeighbour tickets above the "
        "dashed line.", thresholds=p.above(t.tenant_latency_spread_max),
        links=[p.runbook_link(options, "NpuNoisyNeighbour")], axis_label="slowest / fastest"), w=8)
    board.add(p.timeseries(
        "Queue length by tenant", [Q(f"sum by (node, device, tenant) ({f.vec('npu_inference_queue_length')})",
                                     f"{DEV} {{{{tenant}}}}")], "none",
        "Requests waiting per tenant: a flooding tenant's queue grows while the others starve.",
        stacked=True), w=8)
    board.add(p.timeseries(
        "Requests by outcome", [Q(sum_rate(f, "npu_inference_requests_total", ["outcome"]), "{{outcome}}")],
        "reqps", "Requests per second on the selected devices by outcome (canary traffic included).",
        stacked=True), w=8)

    board.row("Runtime: operators, model loads")
    board.add(p.timeseries(
        "Operator execution time by placement", [
            Q(sum_rate(f, "npu_op_seconds_total", ["op", "placement"]), "{{op}} ({{placement}})")], "s",
        "Seconds spent per second of wall time in each op kind, on the device or on the host (CPU "
        "fallback). A host op at the top of the stack is the unsupported operator to fix.", stacked=True),
        w=12)
    ops = f.vec("npu_ops_total", fn="rate")
    board.add(p.timeseries(
        "Host vs device op split", [
            Q(f"sum by (placement) ({ops})\n/ ignoring (placement) group_left ()\nsum ({ops})", "{{placement}}")],
        "percentunit",
        "Share of graph ops by where they ran; the host share above the dashed line is what "
        "NpuCpuFallbackHigh tickets on.", thresholds=p.above(t.cpu_fallback_max_ratio), stacked=True,
        links=[p.runbook_link(options, "NpuCpuFallbackHigh")]), w=12)
    board.add(p.timeseries(
        "Model load time", [Q(f"max by (node, device, model) ({f.vec('npu_model_load_seconds')})",
                              f"{DEV} {{{{model}}}}")], "s",
        "Duration of the latest model load onto each device (SRE guide: < 1 s preferred)."), w=12)
    board.add(p.timeseries(
        "Cold starts", [Q(sum_increase(f, "npu_model_cold_starts_total", "5m", ["node", "device", "model"]),
                          f"{DEV} {{{{model}}}}")], "none",
        "Requests that waited for a model load in the trailing 5 minutes (after resets and reloads)."), w=12)

    board.row("Hardware: thermals, power, memory, clocks")
    threshold = f.sel("npu_temperature_throttle_threshold_celsius")
    board.add(p.timeseries(
        "Temperature vs throttle threshold", [
            Q(f.sel("npu_temperature_celsius"), f"{DEV} temperature"),
            Q(threshold, f"{DEV} throttle threshold"),
            Q(f"{threshold} - {t.temperature_margin_celsius:g}", f"{DEV} alert line"),
        ], "celsius",
        f"Die temperature, the device's throttle threshold, and the line {t.temperature_margin_celsius:g} °C "
        "below it where NpuTemperatureNearLimit tickets.",
        links=[p.runbook_link(options, "NpuTemperatureNearLimit"), p.runbook_link(options, "NpuThermalThrottling")]),
        w=12)
    board.add(p.timeseries(
        "Power vs limit", [Q(f.sel("npu_power_watts"), f"{DEV} power"),
                           Q(f.sel("npu_power_limit_watts"), f"{DEV} limit")], "watt",
        "Board power against its enforced limit; sustained power at the limit throttles for power_cap."), w=12)
    total = f.sel("npu_memory_total_bytes")
    board.add(p.timeseries(
        "Device memory", [
            Q(f.sel("npu_memory_used_bytes"), f"{DEV} used"), Q(total, f"{DEV} capacity"),
            Q(f"{total} * {t.memory_high_ratio:g}", f"{DEV} high-water mark"),
        ], "bytes",
        f"Memory in use against capacity; above the high-water mark ({t.memory_high_ratio:.0%} of capacity) "
        "the next batch may fail to allocate (OOM).", links=[p.runbook_link(options, "NpuOutOfMemory")]), w=12)
    board.add(p.timeseries(
        "Clocks", [Q(f.sel("npu_clock_hertz"), f"{DEV} clock"), Q(f.sel("npu_clock_max_hertz"), f"{DEV} max")],
        "hertz", "Compute clock against its unthrottled maximum; the gap is throttling.",
        links=[p.runbook_link(options, "NpuThermalThrottling")]), w=12)
    board.add(p.timeseries(
        "Utilization", [Q(f.sel("npu_utilization_ratio"), DEV)], "percentunit",
        "Compute busy fraction.", thresholds=p.above(t.utilization_high_ratio, "orange")), w=8)
    board.add(p.timeseries(
        "Device errors by kind", [Q(sum_rate(f, "npu_errors_total", ["node", "device", "kind"]),
                                    f"{DEV} {{{{kind}}}}")], "cps",
        "Errors per second by kind; corrected ECC errors are counted but do not alert.",
        links=[p.runbook_link(options, "NpuDeviceErrorRateHigh")]), w=8)
    board.add(p.timeseries(
        "Collector sample duration", [Q(f.sel("npuobs_collector_duration_seconds"), "{{node}} {{collector}}")], "s",
        "How long each exporter collector's last sample took; a collector near its timeout starves the scrape.",
        links=[p.runbook_link(options, "NpuCollectorFailing")]), w=8)

    board.row("Versions")
    board.add(p.table(
        "Driver, firmware and runtime versions", [Q(f.sel("npu_device_info"))],
        "One row per device. Differing versions of one vendor and model for over "
        f"{t.version_mismatch_for} ticket as NpuVersionMismatch; versions outside the fleet policy as "
        "NpuVersionNotAllowed.", hidden=["__name__", "job", "instance"],
        links=[p.runbook_link(options, "NpuVersionMismatch"), p.runbook_link(options, "NpuVersionNotAllowed")]),
        w=24, h=8)

    board.panels = [_mark_debug(panel) for panel in board.panels]
    variables = [p.datasource_variable(options), *p.device_variables(VARIABLES)]
    return p.dashboard(p.DEBUG, board, variables,
                       "Per node and device drill-down: operators, CPU fallback, model loads, tenants, sensors, "
                       "versions and trace exemplars.",
                       [p.dashboard_link(p.ONCALL), p.dashboard_link(p.EXECUTIVE)], ["debug"])


def _mark_debug(panel: g.Panel) -> g.Panel:
    """Say on the panel when it needs the debug profile's series (see the module docstring)."""
    exprs = [getattr(t, "expr", "") for t in getattr(panel, "targets", None) or ()]
    if not any(needs_debug(e) for e in exprs):
        return panel
    return attr.evolve(panel, description=f"{panel.description} {DEBUG_NOTE}".strip())

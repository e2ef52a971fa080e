"""Generators for committed docs derived from the schema (tests fail when the copies are stale)."""

from __future__ import annotations

from npuobs import cardinality, schema


def metrics_markdown() -> str:
    """``docs/metrics.md``: every metric, its type, unit, labels, and what it serves."""
    lines = [
        "# Metrics",
        "",
        "Generated from `npuobs/schema.py` by `npuobs generate` (or `npuobs schema --format markdown`);",
        "do not edit by hand (a test fails when this file is stale).",
        "",
        "Failure modes: " + "; ".join(f"**{k}** {v}" for k, v in schema.FAILURE_MODES.items()) + ".",
        "",
        "Profile: the smallest cardinality profile that emits the metric (`npuobs exporter --profile`);",
        "below `debug` its series are summed (max for the gauges marked so) over the labels in the last column.",
        "",
        "| metric | type | unit | labels | serves | profile | aggregated away below debug | help |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in schema.METRICS:
        labels = ", ".join(f"`{label}`" for label in m.labels)
        detail = ", ".join(f"`{label}`" for label in m.detail_labels) or "-"
        if m.detail_labels and m.type is schema.MetricType.GAUGE:
            detail += f" ({m.rollup})"
        lines.append(f"| `{m.name}` | {m.type.value} | {m.unit or '-'} | {labels} | {', '.join(m.serves)} | "
                     f"{m.profile.value} | {detail} | {m.help} |")
    lines += _profiles_section()
    lines += [
        "",
        "## Label values (closed sets, bounded cardinality)",
        "",
        f"- `reason` on `npu_throttle_reason_active`: {', '.join(schema.THROTTLE_REASONS)}",
        f"- `reason` on `npu_resets_total`: {', '.join(schema.RESET_REASONS)}",
        f"- `kind` on `npu_errors_total`: {', '.join(schema.ERROR_KINDS)}",
        f"- `outcome` on `npu_inference_requests_total`: {', '.join(schema.REQUEST_OUTCOMES)}",
        f"- `placement` on `npu_ops_total` / `npu_op_seconds_total`: {', '.join(schema.OP_PLACEMENTS)}",
        f"- `action` / `result` on `npuobs_remediation_actions_total`: {', '.join(schema.REMEDIATION_ACTIONS)} / "
        f"{', '.join(schema.REMEDIATION_RESULTS)}",
        f"- latency buckets (seconds): {', '.join(str(b) for b in schema.LATENCY_BUCKETS)}",
        "",
        "## Derived series (recording rules)",
        "",
        "Declared in `npuobs/schema.py` (`DERIVED`) next to the metrics they read; `npuobs alerts generate` writes",
        "them into `alerts/generated/recording-rules.yaml`, alerts and dashboard panels read them by name.",
        "",
        "| series | labels | serves | what |",
        "|---|---|---|---|",
    ]
    for d in schema.DERIVED:
        labels = ", ".join(f"`{label}`" for label in d.labels)
        lines.append(f"| `{d.name}` | {labels} | {', '.join(d.serves)} | {d.help} |")
    lines += [
        "",
        "Derived series with a level prefix (`npuobs_device:`, `npuobs_node:`, `npuobs_cluster:`) are fleet",
        "pre-aggregations in their own rule group, `npuobs-fleet-recordings`, read by the executive and on-call",
        f"fleet panels instead of every node's raw series; their fixed rate window is {schema.AGGREGATION_WINDOW}",
        "(docs/dashboards.md). Computed in panels: p50/p95/p99 = `histogram_quantile` over the recorded bucket",
        "rates (the debug dashboard: over `npu_inference_latency_seconds_bucket`); energy per inference = the",
        "serving devices' recorded energy rate / successful inferences.",
        "",
    ]
    return "\n".join(lines)


def _profiles_section() -> list[str]:
    """Series per node and per device for each profile, worst case, at the documented shape."""
    shape = cardinality.Shape()
    lines = [
        "",
        "## Cardinality profiles",
        "",
        "- **minimal**: what the generated SLO rules and device alerts read, nothing else.",
        "- **standard** (default): + what the executive and on-call dashboards read; workload histograms and",
        "  request counters per node, model and tenant (not per device), resets without `reason`, op timings",
        "  without `op`.",
        "- **debug**: every label: per-device and per-tenant workload series, per-op timings, clocks, the power",
        "  and memory gauges (the energy counter is in every profile).",
        "",
        f"Worst case at {shape.devices} devices x {shape.tenants} tenants ({shape.models} model, {shape.ops} op "
        f"kinds, {shape.collectors} collectors, {shape.containers_per_device} container per device): every "
        "closed label takes all of its values, so a scrape is at most this. Budget for `standard`: "
        f"<= {schema.STANDARD_SERIES_PER_DEVICE_MAX} series per device, every series of the node counted.",
        "",
        "| metric | " + " | ".join(schema.PROFILES) + " |",
        "|---|" + "---|" * len(schema.PROFILES),
    ]
    for m in filter(cardinality.is_per_node, schema.METRICS):
        lines.append(f"| `{m.name}` | " + " | ".join(str(cardinality.series(m, p, shape)) for p in schema.PROFILES)
                     + " |")
    lines.append("| **series per node** | " + " | ".join(
        f"**{cardinality.node_series(p, shape)}**" for p in schema.PROFILES) + " |")
    lines.append("| **series per device** | " + " | ".join(
        f"**{cardinality.per_device(p, shape):g}**" for p in schema.PROFILES) + " |")
    return lines

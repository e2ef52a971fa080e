"""Generators for committed docs derived from the schema (tests fail when the copies are stale)."""

from __future__ import annotations

from npuobs import schema


def metrics_markdown() -> str:
    """``docs/metrics.md``: every metric, its type, unit, labels, and what it serves."""
    lines = [
        "# Metrics",
        "",
        "Generated from `npuobs/schema.py` by `npuobs schema --format markdown > docs/metrics.md`;",
        "do not edit by hand (a test fails when this file is stale).",
        "",
        "Failure modes: " + "; ".join(f"**{k}** {v}" for k, v in schema.FAILURE_MODES.items()) + ".",
        "",
        "| metric | type | unit | labels | serves | help |",
        "|---|---|---|---|---|---|",
    ]
    for m in schema.METRICS:
        labels = ", ".join(f"`{label}`" for label in m.labels)
        lines.append(f"| `{m.name}` | {m.type.value} | {m.unit or '-'} | {labels} | {', '.join(m.serves)} | {m.help} |")
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
        "Derived signals: CPU-fallback ratio = `rate(npu_ops_total{placement=\"host\"})` / `rate(npu_ops_total)`;",
        "energy per inference = `rate(npu_energy_joules_total)` / `rate(npu_inference_requests_total)`;",
        "p50/p95/p99 = `histogram_quantile` over `npu_inference_latency_seconds_bucket`.",
        "",
    ]
    return "\n".join(lines)

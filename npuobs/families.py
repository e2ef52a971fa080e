"""Building metric families from the schema: the one layer below the exporter and the instrumentation library.

Both the per-node exporter (``npuobs.exporter.families``, from a backend's snapshot) and an
instrumented inference server (``npuobs.instrumentation.sinks``, from its live stores) expose the
schema's runtime metrics. They share, from here, how a family is made from its schema entry
(name, type, help, labels, OpenMetrics unit), how a latency histogram's buckets carry the
slowest request as an exemplar, and how per-op statistics roll up into per-placement op counts,
so the two expositions cannot drift apart (client_python's ``metrics_core`` role).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from npuobs.schema import MetricSpec, MetricType, metric


def family(name: str, spec: MetricSpec | None = None) -> Metric:
    """An empty metric family for schema metric ``name`` (labels in schema order).

    The OpenMetrics ``# UNIT`` is set only when the name ends in the unit, as OpenMetrics requires;
    prometheus_client would otherwise append the unit to the name.
    """
    spec = spec or metric(name)
    labels = list(spec.labels)
    base = name[: -len("_total")] if spec.type is MetricType.COUNTER else name
    unit = spec.unit if spec.unit and base.endswith(f"_{spec.unit}") else ""
    if spec.type is MetricType.GAUGE:
        return GaugeMetricFamily(name, spec.help, labels=labels, unit=unit)
    if spec.type is MetricType.COUNTER:
        return CounterMetricFamily(name, spec.help, labels=labels, unit=unit)
    if spec.type is MetricType.HISTOGRAM:
        return HistogramMetricFamily(name, spec.help, labels=labels, unit=unit)
    return InfoMetricFamily(name[: -len("_info")], spec.help, labels=labels)


def non_empty(families: Iterable[Metric]) -> list[Metric]:
    """Drop families without samples: a metric nobody reported has no HELP/TYPE noise either."""
    return [f for f in families if f.samples]


def histogram_buckets(cumulative: Iterable[tuple[float, float]],
                      exemplar: tuple[str, float, float | None] | None = None) -> list[tuple]:
    """``(le, cumulative count[, exemplar])`` per bucket for ``HistogramMetricFamily.add_metric``.

    Bounds are written with prometheus_client's float formatting (``le="0.1"``, ``le="+Inf"``)
    because the generated SLO rules select ``le="0.1"`` literally. ``exemplar`` is the slowest
    recent request, ``(trace_id, seconds, unix timestamp or None)``: it sits on the first bucket
    whose bound holds it, so a dashboard can jump from a slow bucket to its trace (the classic
    text format has no exemplars and drops it).
    """
    out: list[tuple] = []
    for bound, count in cumulative:
        if exemplar is not None and exemplar[1] <= bound:
            trace_id, seconds, timestamp = exemplar
            out.append((floatToGoString(bound), count, Exemplar({"trace_id": trace_id}, seconds, timestamp)))
            exemplar = None
        else:
            out.append((floatToGoString(bound), count))
    return out


def add_ops(ops: Metric, op_seconds: Metric, key: Sequence[str],
            stats: Iterable[tuple[tuple[str, str], int, float]], placements: Iterable[str] = ()) -> None:
    """Per-op seconds and the per-placement roll-up of op counts for one device ``key``.

    ``stats`` holds ``((op, placement), count, seconds)``; ``npu_op_seconds_total`` gets one series
    per (op, placement), ``npu_ops_total`` one per placement (the count summed over ops), in sorted
    order. ``placements`` are reported even at 0 once any op ran (a runtime that knows every
    placement says "0 on host" rather than nothing); a backend reports the placements it saw.
    """
    per_placement: dict[str, int] = {}
    for (op, placement), count, seconds in sorted(stats, key=lambda s: s[0]):
        op_seconds.add_metric([*key, op, placement], seconds)
        per_placement[placement] = per_placement.get(placement, 0) + count
    if per_placement:
        for placement in placements:
            per_placement.setdefault(placement, 0)
    for placement, count in sorted(per_placement.items()):
        ops.add_metric([*key, placement], count)

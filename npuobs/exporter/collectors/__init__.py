"""Pure collectors: immutable inputs (a snapshot, self-health) in, Prometheus metric families out.

One module per concern, as in node_exporter's ``collector/`` directory: ``device`` (sensors,
counters, identity, vanished devices), ``workload`` (the inference runtime), ``pods`` (kubelet
pod attribution) and ``selfmetrics`` (the exporter's own health). None of them does I/O or keeps
state, so they are tested with plain values and can never hang a scrape.

Every family is built by :func:`family` from the metric's schema entry, so a name, type, help
text or label set that is not in ``npuobs.schema`` cannot be emitted by accident.
"""

from __future__ import annotations

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

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


def non_empty(families: list[Metric]) -> list[Metric]:
    """Drop families without samples: a metric nobody reported has no HELP/TYPE noise either."""
    return [f for f in families if f.samples]

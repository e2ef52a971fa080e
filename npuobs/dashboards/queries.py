"""PromQL for the dashboards, built from the schema so a panel cannot name a metric that does not exist.

Every selector gets the dashboard's template-variable filters for exactly the labels its series
carry: ``npu_temperature_celsius`` is filtered by node, device and vendor, the inference histogram
by node, device and model, a recording rule by the labels its ``by`` clause keeps. A filter on a
label a series lacks would empty the panel as soon as a user picks a value, so it is never written.

Filters are regex matchers whose "All" value is ``.*``. ``.*`` also matches the empty string, and
Prometheus treats a missing label as empty: ``cluster=~".*"`` keeps series without a ``cluster``
label, so the dashboards work unchanged whether or not the Prometheus setup adds one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from npuobs import schema
from npuobs.alerting import conventions as cv
from npuobs.schema import Profile

RATE = "$__rate_interval"
"""Grafana's rate window: at least four scrape intervals, so ``rate()`` always has samples."""

ALL = ".*"

# Labels each recording rule keeps: owned by the derived series in the schema (the rules' ``by``
# clauses are written from them); the SLO rules keep ``cv.SLO_LABELS``. The live test checks them
# against real results.
RECORD_LABELS: dict[str, tuple[str, ...]] = {d.name: d.labels for d in schema.DERIVED}
SLO_RECORD_PREFIX = "npuobs:slo_"

# Series whose ``model`` label names the hardware model (RNGD, ATOM ...), not the served ML model
# the ``$model`` variable selects.
HARDWARE_MODEL_LABEL = frozenset({"npu_device_info", cv.DISTINCT_VERSIONS})

# Series Prometheus itself writes; the only names outside the schema and the rule conventions a
# panel may use.
PROMETHEUS_SERIES = frozenset({"ALERTS", "up"})


# Recording rules over series whose per-device detail only the debug profile exports: on standard
# they exist per node, without ``device``.
DEBUG_DETAIL_RECORDS = frozenset({cv.LATENCY_P99, cv.TENANT_P99_SPREAD})

DEBUG_NOTE = ("Per-device detail needs the debug profile (`npuobs exporter --profile debug`); on standard "
              "this panel shows the per-node aggregate or stays empty (docs/metrics.md).")


def needs_debug(expr: str) -> bool:
    """True when ``expr`` reads a series the standard profile omits or exports without some of its
    debug labels (per-device workload series, per-op timings, clocks)."""
    for name in set(_IDENT.findall(expr)):
        if name in DEBUG_DETAIL_RECORDS:
            return True
        spec = schema.resolve_sample_name(name)
        if spec is not None and (not spec.emitted_in(Profile.STANDARD) or spec.detail_labels):
            return True
    return False


_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def labels_of(name: str, profile: Profile = Profile.STANDARD) -> tuple[str, ...]:
    """Labels of a schema metric (any histogram sample name), a recording rule or a Prometheus series,
    as the exporter's ``profile`` emits them.

    Raises KeyError for anything else: a dashboard naming an unknown metric fails at generation.
    """
    spec = schema.resolve_sample_name(name)
    if spec is not None:
        return spec.labels_in(profile)
    if name in DEBUG_DETAIL_RECORDS and profile is not Profile.DEBUG:
        return tuple(label for label in RECORD_LABELS[name] if label != "device")
    if name in RECORD_LABELS:
        return RECORD_LABELS[name]
    if name.startswith(SLO_RECORD_PREFIX):
        return cv.SLO_LABELS
    if name == "up":
        return ("job", "instance")
    if name == "ALERTS":
        return ("alertname", "alertstate", "severity")  # alert counts stay fleet-wide under any filter
    raise KeyError(f"{name!r} is neither in the npuobs schema nor a recording rule of npuobs.alerting.conventions")


def is_raw(name: str) -> bool:
    """True for metrics scraped from the exporter (they may carry a ``cluster`` label)."""
    return schema.resolve_sample_name(name) is not None


@dataclass(frozen=True)
class Filters:
    """The template variables one dashboard offers, turned into matchers per series.

    ``variables`` is a subset of cluster, node, vendor, device, model.
    """

    variables: tuple[str, ...]
    profile: Profile = Profile.STANDARD  # the exporter profile the dashboard must work on

    def matchers(self, name: str) -> list[str]:
        labels = set(labels_of(name, self.profile))
        if name in HARDWARE_MODEL_LABEL:
            labels.discard("model")
        if is_raw(name):
            labels.add("cluster")  # external label or relabelled target label, when present
        return [f'{var}=~"${var}"' for var in self.variables if var in labels]

    def sel(self, name: str, extra: str = "") -> str:
        """``name{filters, extra}``: a vector selector with this dashboard's filters."""
        parts = self.matchers(name) + ([extra] if extra else [])
        return f"{name}{{{','.join(parts)}}}" if parts else name

    def vendor_scope(self, name: str) -> str | None:
        """Workload series have no ``vendor`` label: scope them through the device they ran on, or
        through the node when the profile exports them per node. None when no scope applies."""
        labels = set(labels_of(name, self.profile))
        if "vendor" not in self.variables or "vendor" in labels or "node" not in labels:
            return None
        if "device" in labels:
            return f"on (node, device) {self.sel('npu_device_up')}"
        return f"on (node) group by (node) ({self.sel('npu_device_up')})"

    def vec(self, name: str, extra: str = "", fn: str | None = None, window: str = RATE) -> str:
        """A filtered selector, optionally wrapped in a range function (``rate``, ``increase`` ...).

        Series without a ``vendor`` label are joined to the devices of the selected vendors, so
        picking a vendor narrows every panel, not only the device ones.
        """
        expr = self.sel(name, extra)
        if fn:
            expr = f"{fn}({expr}[{window}])"
        scope = self.vendor_scope(name)
        if scope:
            expr = f"({expr} and {scope})"
        return expr


def by(labels: Iterable[str]) -> str:
    """`` by (a, b)`` or nothing, for aggregations that may or may not group."""
    labels = tuple(labels)
    return f" by ({', '.join(labels)})" if labels else ""


def quantile(f: Filters, q: float, histogram: str, group: Iterable[str] = (), extra: str = "",
             window: str = RATE) -> str:
    """``histogram_quantile`` over a schema histogram, aggregated across everything but ``group``."""
    spec = schema.metric(histogram)
    if spec.type is not schema.MetricType.HISTOGRAM:
        raise ValueError(f"{histogram} is a {spec.type.value}, not a histogram")
    inner = f.vec(f"{histogram}_bucket", extra, "rate", window)
    return f"histogram_quantile({q:g}, sum{by((*group, 'le'))} ({inner}))"


def recorded_quantile(f: Filters, q: float, buckets: str, group: Iterable[str] = ()) -> str:
    """``histogram_quantile`` over a recorded bucket rate (a fleet pre-aggregation that keeps ``le``),
    aggregated across everything but ``group``: the panel reads a few recorded series, not every
    node's raw buckets."""
    if buckets not in schema.DERIVED_BY_NAME or "_bucket:" not in buckets:
        raise ValueError(f"{buckets} is not a recorded histogram bucket rate")
    return f"histogram_quantile({q:g}, sum{by((*group, 'le'))} ({f.vec(buckets)}))"


def sum_rate(f: Filters, counter: str, group: Iterable[str] = (), extra: str = "", window: str = RATE) -> str:
    return f"sum{by(group)} ({f.vec(counter, extra, 'rate', window)})"


def sum_increase(f: Filters, counter: str, window: str, group: Iterable[str] = (), extra: str = "") -> str:
    return f"sum{by(group)} ({f.vec(counter, extra, 'increase', window)})"


def or_zero(expr: str) -> str:
    """``expr or vector(0)``: a count of bad things that is 0, not "no data", when there are none."""
    return f"{expr} or vector(0)"

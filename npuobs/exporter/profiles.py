"""Cardinality profiles applied to metric families: drop what a profile does not emit, aggregate the rest.

The families are always built at full (``debug``) detail from the snapshot; this pass then keeps
the metrics the profile emits (``MetricSpec.profile``) and sums their series over the labels only
``debug`` keeps (``MetricSpec.detail_labels``), or takes the maximum for gauges whose ``rollup``
is ``max``. Doing it here, once per snapshot and after the families are built, keeps one builder
for every profile: a ``standard`` series is by construction the sum of the ``debug`` series it
stands for, so a query gives the same fleet-wide answer on either profile.

Histograms sum bucket by bucket (same ``le``), and ``_sum``/``_count`` alike; the exemplar with
the largest value per bucket survives, so the slowest request stays one click away.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import Metric
from prometheus_client.samples import Sample

from npuobs import schema
from npuobs.schema import MetricSpec, MetricType, Profile


def _family_spec() -> dict[str, MetricSpec]:
    """prometheus_client family name (counters without ``_total``, info without ``_info``) -> spec."""
    out: dict[str, MetricSpec] = {}
    for spec in schema.METRICS:
        if spec.type is MetricType.COUNTER:
            out[spec.name.removesuffix("_total")] = spec
        elif spec.type is MetricType.INFO:
            out[spec.name.removesuffix("_info")] = spec
        else:
            out[spec.name] = spec
    return out


_SPECS = _family_spec()


def spec_of(family: Metric) -> MetricSpec | None:
    return _SPECS.get(family.name)


def apply(families: Iterable[Metric], profile: Profile | str) -> list[Metric]:
    """The families ``profile`` emits, aggregated over the labels it drops; unknown families pass through."""
    profile = Profile(profile)
    out: list[Metric] = []
    for family in families:
        spec = spec_of(family)
        if spec is None:
            out.append(family)
        elif spec.emitted_in(profile):
            dropped = set(spec.labels) - set(spec.labels_in(profile))
            out.append(_aggregate(family, dropped, spec.rollup) if dropped else family)
    return out


def _aggregate(family: Metric, dropped: set[str], rollup: str) -> Metric:
    use_max = family.type == "info" or (family.type == "gauge" and rollup == "max")
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], Sample] = {}
    for s in family.samples:
        key = (s.name, tuple((k, v) for k, v in s.labels.items() if k not in dropped))
        old = merged.get(key)
        if old is None:
            merged[key] = Sample(s.name, dict(key[1]), s.value, s.timestamp, s.exemplar)
            continue
        value = max(old.value, s.value) if use_max else old.value + s.value
        exemplar = old.exemplar
        if s.exemplar is not None and (exemplar is None or s.exemplar.value > exemplar.value):
            exemplar = s.exemplar
        merged[key] = Sample(s.name, old.labels, value, old.timestamp, exemplar)
    out = Metric(family.name, family.documentation, family.type, family.unit)
    out.samples = list(merged.values())
    return out

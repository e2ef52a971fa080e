"""The exporter's own health, node_exporter style: success, duration, errors per data source.

A failing or hung backend shows up here (``npuobs_collector_success 0``) while the scrape itself
still succeeds, so Prometheus's ``up`` keeps meaning "the exporter answers" and the collector
alert says which source is broken. The last-success timestamp is absent until a first success:
a 0 would read as "last succeeded in 1970".
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.core import Metric

from npuobs.devices.source import SourceStatus
from npuobs.exporter.families import Inputs, builder
from npuobs.families import family, non_empty


@builder("selfmetrics")
def _from_inputs(inputs: Inputs) -> list[Metric]:
    return build(inputs.node, inputs.statuses, inputs.version)


def build(node: str, statuses: Mapping[str, SourceStatus], version: str) -> list[Metric]:
    """One series set per source (``collector`` label): every backend, child of ``auto`` and
    PodResources, as ``npuobs.devices.source.SourceHealth`` recorded them."""
    success, duration = family("npuobs_collector_success"), family("npuobs_collector_duration_seconds")
    last, errors = family("npuobs_collector_last_success_timestamp_seconds"), family("npuobs_collector_errors_total")
    build = family("npuobs_exporter_build_info")
    for name, st in sorted(statuses.items()):
        key = [node, name]
        success.add_metric(key, 1.0 if st.success else 0.0)
        duration.add_metric(key, st.duration_seconds)
        if st.last_success is not None:
            last.add_metric(key, st.last_success)
        errors.add_metric(key, float(st.errors_total))
    build.add_metric([node, version], {})
    return non_empty([success, duration, last, errors, build])

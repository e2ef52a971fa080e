"""A model's serving capacity: which devices serve it. The one place the controller reads it from.

Today this reads the exporters' series directly: a device serves a model when it reports canary
series for it (``npu_golden_mismatches_total{model}``, which keeps ``device`` in every cardinality
profile, unlike the request counters) and is up (``npu_device_up == 1``), restricted to one cluster
when the series carry the cluster label. When the alerting policy's capacity
recording rule (per model and cluster) lands, this query becomes that rule's name.
"""

from __future__ import annotations

from npuobs.promapi import PrometheusAPI


def serving_devices(prometheus: PrometheusAPI, model: str, cluster: str, cluster_label: str = "cluster"
                    ) -> set[tuple[str, str]]:
    """(node, device) of every device that serves ``model`` and is up (the target of a drain is added by the caller)."""
    scope = f',{cluster_label}="{cluster}"' if cluster != "default" else ""
    rows = prometheus.query(
        f'count by (node, device) (npu_golden_mismatches_total{{model="{model}"{scope}}})'
        f' and on (node, device) (npu_device_up == 1)')
    return {(r["metric"].get("node", ""), r["metric"].get("device", "")) for r in rows}

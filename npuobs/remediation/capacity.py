"""A model's serving capacity as the controller reads it: the one place that knows where it comes from.

The alerting policy records it per served model and cluster (``npuobs/alerting/capacity.py``):
``npuobs:serving_devices_expected:count`` is how many devices served the model lately (an hour's
inventory, so a device that just went down still counts as expected capacity). The capacity floor
compares the drained devices with that number.
"""

from __future__ import annotations

from npuobs.alerting import conventions as cv
from npuobs.promapi import PrometheusAPI


def expected_devices(prometheus: PrometheusAPI, model: str, cluster: str, cluster_label: str = "cluster") -> int:
    """Devices that serve ``model`` (in ``cluster`` when the series carry one); 0 when nothing is recorded."""
    scope = f',{cluster_label}="{cluster}"' if cluster != "default" else ""
    rows = prometheus.query(f'sum({cv.SERVING_DEVICES_EXPECTED}{{model="{model}"{scope}}})')
    return int(float(rows[0]["value"][1])) if rows else 0

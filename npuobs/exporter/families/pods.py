"""Pod attribution: which namespace/pod/container holds each device, as its own info-style series.

Pods are not added as labels on every device series (dcgm-exporter's way): a device shared by two
pods would then report its power twice and ``sum()`` would double it, and every pod restart would
churn every series of the device. Instead one ``npu_device_pod_info{node,device,vendor,namespace,
pod,container,claim} 1`` series per (device, container) is joined in queries where attribution is
wanted::

    npu_device_pod_info * on (node, device) group_left npu_power_watts

A device ID from the kubelet matches a device when it equals the device's id (with or without the
``auto`` backend's ``<backend>:`` prefix) or its UUID, under one of the vendor's resource names.
Devices allocated through Dynamic Resource Allocation match the same way under one of the vendor's
DRA driver names (a driver's ``gpu-0``/``npu3`` naming also matches device ``0``/``3``), and their
series carry the ResourceClaim's name in ``claim``; device-plugin allocations carry ``claim=""`` (always
emitted, so every series has the schema's labels; Prometheus stores an empty label as absent).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.core import Metric

from npuobs import schema
from npuobs.devices.base import Snapshot
from npuobs.exporter.families import Inputs, builder
from npuobs.exporter.podresources.client import PodAttribution
from npuobs.families import family, non_empty
from npuobs.schema import MetricSpec

POD_INFO = "npu_device_pod_info"


def spec() -> MetricSpec:
    return schema.BY_NAME[POD_INFO]


@builder("pods")
def _from_inputs(inputs: Inputs) -> list[Metric]:
    if inputs.attribution is None:
        return []
    return build(inputs.node, inputs.snapshot, inputs.attribution, inputs.resource_names, inputs.driver_names)


def build(node: str, snapshot: Snapshot | None, attribution: PodAttribution,
          resource_names: Mapping[str, Iterable[str]],
          driver_names: Mapping[str, Iterable[str]] | None = None) -> list[Metric]:
    info = family(POD_INFO, spec())
    for r in snapshot.devices if snapshot else ():
        ids = {r.info.device, r.info.device.rpartition(":")[2], r.info.uuid} - {""}
        names = (*resource_names.get(r.info.vendor, ()), *(driver_names or {}).get(r.info.vendor, ()))
        for holder in attribution.holders_for(names, ids):
            pod = holder.pod
            info.add_metric([node, r.info.device, r.info.vendor, pod.namespace, pod.pod, pod.container, holder.claim],
                            {})
    return non_empty([info])

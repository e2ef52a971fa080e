"""Pod attribution: which namespace/pod/container holds each device, as its own info-style series.

Pods are not added as labels on every device series (dcgm-exporter's way): a device shared by two
pods would then report its power twice and ``sum()`` would double it, and every pod restart would
churn every series of the device. Instead one ``npu_device_pod_info{node,device,vendor,namespace,
pod,container} 1`` series per (device, container) is joined in queries where attribution is
wanted::

    npu_device_pod_info * on (node, device) group_left npu_power_watts

A device ID from the kubelet matches a device when it equals the device's id (with or without the
``auto`` backend's ``<backend>:`` prefix) or its UUID, under one of the vendor's resource names.
Devices allocated through Dynamic Resource Allocation match the same way under one of the vendor's
DRA driver names (a driver's ``gpu-0``/``npu3`` naming also matches device ``0``/``3``), and their
series carry the ResourceClaim's name in ``claim`` (empty for device-plugin allocations).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client.core import Metric

from npuobs import schema
from npuobs.devices.base import Snapshot
from npuobs.exporter.families import Inputs, builder
from npuobs.exporter.podresources.client import PodAttribution
from npuobs.families import family, non_empty
from npuobs.schema import DEVICE_LABELS, MetricSpec, MetricType

POD_INFO = "npu_device_pod_info"

# The schema module is the single source of truth; this spec is the proposed entry for it and is
# used only while npuobs.schema lacks it (schema.BY_NAME wins as soon as it has the name).
_PROPOSED_SPEC = MetricSpec(
    POD_INFO, MetricType.INFO, "",
    "Pod container the kubelet allocated the device to (PodResources API); one series per container "
    "sharing the device; the value is always 1.",
    DEVICE_LABELS + ("namespace", "pod", "container", "claim"), ("F7",))


def spec() -> MetricSpec:
    return schema.BY_NAME.get(POD_INFO, _PROPOSED_SPEC)


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

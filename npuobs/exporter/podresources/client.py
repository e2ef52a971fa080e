"""Which pods use which devices, from the kubelet's PodResources ``v1.List`` over its unix socket.

The kubelet knows, per container, the device IDs each device plugin allocated under each
extended-resource name (``furiosa.ai/rngd: ["npu0"]``), and, with the kubelet feature gate
``KubeletPodResourcesDynamicResources``, the devices Dynamic Resource Allocation gave it through
ResourceClaims (``dynamic_resources``: claim name and namespace, then per device the DRA driver,
pool and device name). Both become ``Allocation``s; a DRA one carries its claim, pool and driver
(the driver name takes the place of the resource name when matching a vendor). The exporter asks on its sampling
interval with a deadline, so a kubelet that hangs costs one failed ``podresources`` collector
run, never a scrape. With no socket at all (not on Kubernetes, or the hostPath not mounted)
attribution is simply off: no collector, no error, no log spam, and grpc is not even imported
(it costs ~12 MB of exporter RSS on every node that is not a Kubernetes node).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from npuobs.exporter.config import PodResourcesConfig


class PodResourcesError(RuntimeError):
    """List failed (deadline, refused, bad reply); the message names the socket and the gRPC status."""


@dataclass(frozen=True)
class PodRef:
    namespace: str
    pod: str
    container: str


# A DRA device name such as "gpu-0" or "npu3" (a driver's own naming) also matches device "0"/"3".
_INDEXED_NAME = re.compile(r"[A-Za-z]+[-_]?(\d+)")


@dataclass(frozen=True)
class Allocation:
    """One device handed to one container: by a device plugin under a resource name, or by a DRA
    driver (``resource_name`` = the driver name, ``device_id`` = its device name) through a claim."""

    resource_name: str
    device_id: str
    pod: PodRef
    claim: str = ""  # the ResourceClaim's name; "" for a device-plugin allocation
    pool: str = ""  # the DRA pool the device is in

    def matches(self, device_ids: set[str]) -> bool:
        if self.device_id in device_ids:
            return True
        m = _INDEXED_NAME.fullmatch(self.device_id) if self.claim else None
        return m is not None and m.group(1) in device_ids


@dataclass(frozen=True)
class Holder:
    """A container holding a device, and the claim it holds it through ("" for a device plugin)."""

    pod: PodRef
    claim: str = ""


@dataclass(frozen=True)
class PodAttribution:
    allocations: tuple[Allocation, ...]

    def holders_for(self, names: Iterable[str], device_ids: Iterable[str]) -> tuple[Holder, ...]:
        """Containers holding any of ``device_ids`` under any of ``names`` (device-plugin resource
        names or DRA driver names), with their claim; several when the device is shared."""
        wanted, ids = set(names), set(device_ids)
        seen: dict[Holder, None] = {}
        for a in self.allocations:
            if a.resource_name in wanted and a.matches(ids):
                seen[Holder(a.pod, a.claim)] = None
        return tuple(seen)

    def pods_for(self, resource_names: Iterable[str], device_ids: Iterable[str]) -> tuple[PodRef, ...]:
        """Containers holding any of ``device_ids`` under any of ``resource_names`` (several when shared)."""
        return tuple(dict.fromkeys(h.pod for h in self.holders_for(resource_names, device_ids)))


def attribution_from(response: Any, resource_names: Mapping[str, Iterable[str]],
                     driver_names: Mapping[str, Iterable[str]] | None = None) -> PodAttribution:
    """Keep the allocations of resources we know, from a ``v1.ListPodResourcesResponse`` (or a
    ``GetPodResourcesResponse``, which holds one pod): device-plugin devices under our resource
    names and DRA devices of our drivers; other devices (NICs, hugepages) are not ours."""
    wanted = {name for names in resource_names.values() for name in names}
    drivers = {name for names in (driver_names or {}).values() for name in names}
    pods = response.pod_resources
    if hasattr(pods, "containers"):  # Get: a single PodResources
        pods = [pods]
    out = []
    for pod in pods:
        for container in pod.containers:
            ref = PodRef(pod.namespace, pod.name, container.name)
            for devices in container.devices:
                if devices.resource_name in wanted:
                    out.extend(Allocation(devices.resource_name, d, ref) for d in devices.device_ids)
            for claim in container.dynamic_resources:
                for res in claim.claim_resources:
                    if res.driver_name in drivers and res.device_name:
                        out.append(Allocation(res.driver_name, res.device_name, ref, claim=claim.claim_name,
                                              pool=res.pool_name))
    return PodAttribution(tuple(out))


class PodResourcesWatcher:
    """Calls ``List`` on the kubelet socket; see the module docstring."""

    COLLECTOR = "podresources"

    def __init__(self, config: PodResourcesConfig) -> None:
        self.config = config
        self._channel: Any = None  # grpc.Channel, imported lazily
        self._stub: Any = None  # api_pb2_grpc.PodResourcesListerStub

    @property
    def socket(self) -> Path:
        return Path(self.config.socket)

    def poll(self) -> PodAttribution | None:
        """The current attribution, None when the socket does not exist; raises PodResourcesError."""
        if not self.socket.exists():
            self.close()
            return None
        import grpc

        from npuobs.exporter.podresources import api_pb2, api_pb2_grpc

        if self._stub is None:
            self._channel = grpc.insecure_channel(f"unix://{self.socket.resolve()}")
            self._stub = api_pb2_grpc.PodResourcesListerStub(self._channel)
        try:
            response = self._stub.List(api_pb2.ListPodResourcesRequest(), timeout=self.config.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            name = code.name if code is not None else "UNKNOWN"
            raise PodResourcesError(f"kubelet PodResources List on {self.socket} failed: {name}: {details}") from exc
        return attribution_from(response, self.config.resource_names, self.config.driver_names)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._stub = None

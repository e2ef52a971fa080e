"""Which pods use which devices, from the kubelet's PodResources ``v1.List`` over its unix socket.

The kubelet knows, per container, the device IDs each device plugin allocated under each
extended-resource name (``furiosa.ai/rngd: ["npu0"]``). The exporter asks on its sampling
interval with a deadline, so a kubelet that hangs costs one failed ``podresources`` collector
run, never a scrape. With no socket at all (not on Kubernetes, or the hostPath not mounted)
attribution is simply off: no collector, no error, no log spam, and grpc is not even imported
(it costs ~12 MB of exporter RSS on every node that is not a Kubernetes node).
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Allocation:
    """One device ID handed to one container under one resource name."""

    resource_name: str
    device_id: str
    pod: PodRef


@dataclass(frozen=True)
class PodAttribution:
    allocations: tuple[Allocation, ...]

    def pods_for(self, resource_names: Iterable[str], device_ids: Iterable[str]) -> tuple[PodRef, ...]:
        """Containers holding any of ``device_ids`` under any of ``resource_names`` (several when shared)."""
        names, ids = set(resource_names), set(device_ids)
        seen: dict[PodRef, None] = {}
        for a in self.allocations:
            if a.resource_name in names and a.device_id in ids:
                seen[a.pod] = None
        return tuple(seen)


def attribution_from(response: Any,
                     resource_names: Mapping[str, Iterable[str]]) -> PodAttribution:
    """Keep the allocations of resources we know (from a ``v1.ListPodResourcesResponse``); other
    devices (NICs, hugepages) are not ours."""
    wanted = {name for names in resource_names.values() for name in names}
    out = []
    for pod in response.pod_resources:
        for container in pod.containers:
            ref = PodRef(pod.namespace, pod.name, container.name)
            for devices in container.devices:
                if devices.resource_name in wanted:
                    out.extend(Allocation(devices.resource_name, d, ref) for d in devices.device_ids)
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
        return attribution_from(response, self.config.resource_names)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._stub = None

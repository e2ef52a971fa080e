"""A simulated kubelet: the real PodResources ``v1`` gRPC API on a unix socket, for a simulated node.

The demo and the tests run exporters the way a cluster does: each exporter asks its node's
kubelet which pods hold which devices. Here every simulated device serves every tenant of the
fleet's load, so each device is allocated to one pod per tenant (namespace = tenant), i.e. the
shared-device case real clusters have with time-sliced accelerators.
"""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from npuobs.exporter.config import DEFAULT_RESOURCE_NAMES
from npuobs.exporter.podresources import api_pb2, api_pb2_grpc
from npuobs.simulator.fleet import NodeConfig
from npuobs.simulator.hardware import CATALOGUE


class _Lister(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self, response: api_pb2.ListPodResourcesResponse) -> None:
        self.response = response

    def List(self, request: Any, context: grpc.ServicerContext) -> api_pb2.ListPodResourcesResponse:  # noqa: N802
        return self.response


def allocations(node: NodeConfig, tenants: tuple[str, ...], model: str) -> api_pb2.ListPodResourcesResponse:
    """One pod per (tenant, device model) holding every device of that model on the node."""
    pods = []
    for device_model in sorted(set(node.devices)):
        spec = CATALOGUE[device_model]
        resource = DEFAULT_RESOURCE_NAMES[spec.vendor][0]
        ids = [str(i) for i, m in enumerate(node.devices) if m == device_model]
        for tenant in tenants:
            container = api_pb2.ContainerResources(
                name="server", devices=[api_pb2.ContainerDevices(resource_name=resource, device_ids=ids)])
            pods.append(api_pb2.PodResources(name=f"{model}-{device_model.lower()}-{node.name}", namespace=tenant,
                                             containers=[container]))
    return api_pb2.ListPodResourcesResponse(pod_resources=pods)


class SimulatedKubelet:
    """Serves ``allocations(...)`` on ``socket``; ``start()``/``stop()`` or a context manager."""

    def __init__(self, socket: Path, node: NodeConfig, tenants: tuple[str, ...], model: str) -> None:
        self.socket = Path(socket)
        self._response = allocations(node, tenants, model)
        self._server: grpc.Server | None = None

    def start(self) -> SimulatedKubelet:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(_Lister(self._response), server)
        server.add_insecure_port(f"unix://{self.socket}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None
        self.socket.unlink(missing_ok=True)

    def __enter__(self) -> SimulatedKubelet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

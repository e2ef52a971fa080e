"""Pod attribution against a real gRPC PodResourcesLister server on a unix socket, plus the
absent-socket (off) and hanging-socket (timeout, self-metric, scrape still 200) cases."""

from __future__ import annotations

import socket
import tempfile
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from exporterkit import get, log_stream_fixture, samples, value

from npuobs.exporter import Exporter, ExporterConfig, PodResourcesConfig
from npuobs.exporter.podresources import api_pb2, api_pb2_grpc
from npuobs.exporter.podresources.client import PodResourcesError, PodResourcesWatcher

pytestmark = pytest.mark.integration  # a real gRPC PodResources server on a unix socket

__all__ = ["log_stream_fixture"]  # the log_stream fixture, used by name


class FakeKubelet(api_pb2_grpc.PodResourcesListerServicer):
    """Device 0 (RNGD) is shared by two pods; device 2 (ATOM) has one; a NIC allocation is ignored."""

    def __init__(self) -> None:
        self.calls = 0

    def List(self, request: api_pb2.ListPodResourcesRequest, context: grpc.ServicerContext):  # noqa: N802
        self.calls += 1

        def pod(ns: str, name: str, container: str, resource: str, *ids: str) -> api_pb2.PodResources:
            devices = api_pb2.ContainerDevices(resource_name=resource, device_ids=list(ids))
            return api_pb2.PodResources(namespace=ns, name=name, containers=[
                api_pb2.ContainerResources(name=container, devices=[devices], cpu_ids=[1, 2])])

        return api_pb2.ListPodResourcesResponse(pod_resources=[
            pod("search", "ranker-7d9f", "server", "furiosa.ai/rngd", "0"),
            pod("ads", "ctr-5c4b", "model", "furiosa.ai/rngd", "0"),
            pod("ads", "ctr-5c4b-2", "model", "rebellions.ai/ATOM", "sim-node-a-02-atom"),  # matched by UUID
            pod("net", "sriov", "nic", "intel.com/sriov", "0"),
        ])


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer
    with tempfile.TemporaryDirectory(prefix="npuobs-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def kubelet(short_dir: Path) -> Iterator[tuple[Path, FakeKubelet]]:
    path = short_dir / "kubelet.sock"
    servicer = FakeKubelet()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix://{path}")
    server.start()
    yield path, servicer
    server.stop(grace=None)


def exporter(sim_state: Path, sock: Path, timeout: float = 1.0) -> Exporter:
    return Exporter(ExporterConfig(backend="sim", node="node-a", state_dir=sim_state, listen="127.0.0.1:0",
                                   interval=0.3, podresources=PodResourcesConfig(socket=sock, timeout=timeout)))


def test_shared_device_attributed_to_both_pods(sim_state: Path, kubelet: tuple[Path, FakeKubelet]) -> None:
    sock, servicer = kubelet
    with exporter(sim_state, sock).start() as exp:
        body = get(f"{exp.url}/metrics")[2]
    pods = sorted((dict(lab)["device"], dict(lab)["namespace"], dict(lab)["pod"], dict(lab)["container"])
                  for (name, lab), v in samples(body).items() if name == "npu_device_pod_info" and v == 1.0)
    assert pods == [("0", "ads", "ctr-5c4b", "model"), ("0", "search", "ranker-7d9f", "server"),
                    ("2", "ads", "ctr-5c4b-2", "model")]
    assert servicer.calls >= 1
    assert value(body, "npuobs_collector_success", collector="podresources") == 1.0
    # attribution is its own series: device series keep exactly the schema labels and are not duplicated
    temps = [lab for (name, lab), _ in samples(body).items() if name == "npu_temperature_celsius"]
    assert len(temps) == 4 and all({k for k, _ in lab} == {"node", "device", "vendor"} for lab in temps)


def test_absent_socket_means_off(sim_state: Path, short_dir: Path) -> None:
    with exporter(sim_state, short_dir / "missing.sock").start() as exp:
        body = get(f"{exp.url}/metrics")[2]
    assert value(body, "npu_device_pod_info") is None
    assert value(body, "npuobs_collector_success", collector="podresources") is None
    assert value(body, "npuobs_collector_success", collector="sim") == 1.0


def test_hanging_kubelet_times_out_with_self_metric(sim_state: Path, short_dir: Path, log_stream) -> None:
    """A socket that accepts and never answers: List hits its deadline, the scrape is still 200."""
    path = short_dir / "hang.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    try:
        t0 = time.monotonic()
        with exporter(sim_state, path, timeout=0.3).start() as exp:
            assert time.monotonic() - t0 < 3
            t1 = time.monotonic()
            status, _, body = get(f"{exp.url}/metrics")
            assert status == 200 and time.monotonic() - t1 < 0.5
    finally:
        listener.close()
    assert value(body, "npuobs_collector_success", collector="podresources") == 0.0
    assert value(body, "npuobs_collector_errors_total", collector="podresources") >= 1
    assert value(body, "npu_temperature_celsius", device="0") is not None  # devices unaffected
    assert value(body, "npu_device_pod_info") is None
    assert "DEADLINE_EXCEEDED" in log_stream.getvalue() and '"collector": "podresources"' in log_stream.getvalue()


def test_watcher_errors_name_the_socket(short_dir: Path) -> None:
    path = short_dir / "refuse.sock"
    path.touch()  # exists but nobody listens
    watcher = PodResourcesWatcher(PodResourcesConfig(socket=path, timeout=0.5))
    with pytest.raises(PodResourcesError, match=str(path)):
        watcher.poll()
    watcher.close()

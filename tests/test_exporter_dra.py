"""DRA attribution: a real gRPC PodResourcesLister on a unix socket answers ``List`` and ``Get``
with ``dynamic_resources`` (ResourceClaims: claim name/namespace, driver, pool, device name) next
to device-plugin allocations; the exporter attributes both in ``npu_device_pod_info``, DRA ones
with their claim in the ``claim`` label.

The responses are built the way a kubelet with ``KubeletPodResourcesDynamicResources`` fills them
(one ``DynamicResource`` per claim a container uses, one ``ClaimResource`` per allocated device).
The simulated node's devices are ``furiosa`` RNGDs; ``rngd.furiosa.ai`` is this test's DRA driver
name for them (configured through ``podresources.driver_names``, as an operator would for a driver
npuobs has no default for)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from exporterkit import get, samples

from npuobs.exporter import Exporter, ExporterConfig, PodResourcesConfig
from npuobs.exporter.config import DEFAULT_DRIVER_NAMES, DEFAULT_RESOURCE_NAMES, ConfigError, load
from npuobs.exporter.podresources import api_pb2, api_pb2_grpc
from npuobs.exporter.podresources.client import Holder, PodRef, attribution_from

pytestmark = pytest.mark.integration

DRIVERS = {**DEFAULT_DRIVER_NAMES, "furiosa": ("rngd.furiosa.ai",)}


def _container(name: str, *, plugin: tuple[str, ...] = (), claims: tuple[tuple[str, str, tuple], ...] = ()
               ) -> api_pb2.ContainerResources:
    """``plugin`` = (resource name, *device ids); ``claims`` = (claim, namespace, ((driver, pool, device), ...))."""
    devices = [api_pb2.ContainerDevices(resource_name=plugin[0], device_ids=list(plugin[1:]))] if plugin else []
    dynamic = [api_pb2.DynamicResource(claim_name=claim, claim_namespace=ns, claim_resources=[
        api_pb2.ClaimResource(driver_name=driver, pool_name=pool, device_name=device,
                              cdi_devices=[api_pb2.CDIDevice(name=f"{driver}/npu={device}")])
        for driver, pool, device in resources]) for claim, ns, resources in claims]
    return api_pb2.ContainerResources(name=name, devices=devices, dynamic_resources=dynamic)


PODS = [
    # a device-plugin allocation, as before DRA
    api_pb2.PodResources(namespace="search", name="ranker-7d9f", containers=[
        _container("server", plugin=("furiosa.ai/rngd", "0"))]),
    # one claim with two devices (driver names them npu1 / npu3), used by two containers of a pod
    api_pb2.PodResources(namespace="llm", name="vllm-0", containers=[
        _container("engine", claims=(("vllm-0-npus", "llm", (("rngd.furiosa.ai", "node-a", "npu1"),
                                                               ("rngd.furiosa.ai", "node-a", "npu3"))),)),
        _container("sidecar", claims=(("vllm-0-npus", "llm", (("rngd.furiosa.ai", "node-a", "npu1"),)),))]),
    # a claim from another vendor's driver and a claim resource with no device name: not ours
    api_pb2.PodResources(namespace="cv", name="detector", containers=[
        _container("main", claims=(("det-gpu", "cv", (("gpu.nvidia.com", "node-a", "gpu-0"),
                                                      ("rngd.furiosa.ai", "node-a", ""))),))]),
]


class DraKubelet(api_pb2_grpc.PodResourcesListerServicer):
    def List(self, request: api_pb2.ListPodResourcesRequest, context: grpc.ServicerContext):  # noqa: N802
        return api_pb2.ListPodResourcesResponse(pod_resources=PODS)

    def Get(self, request: api_pb2.GetPodResourcesRequest, context: grpc.ServicerContext):  # noqa: N802
        for pod in PODS:
            if (pod.namespace, pod.name) == (request.pod_namespace, request.pod_name):
                return api_pb2.GetPodResourcesResponse(pod_resources=pod)
        context.abort(grpc.StatusCode.NOT_FOUND, f"pod {request.pod_namespace}/{request.pod_name} not found")


@pytest.fixture(scope="module")
def kubelet() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="npuobs-dra-", dir="/tmp") as d:  # unix socket paths are short
        path = Path(d) / "kubelet.sock"
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(DraKubelet(), server)
        server.add_insecure_port(f"unix://{path}")
        server.start()
        yield path
        server.stop(grace=None)


def test_exporter_attributes_claims_next_to_device_plugins(sim_state: Path, kubelet: Path) -> None:
    config = ExporterConfig(backend="sim", node="node-a", state_dir=sim_state, listen="127.0.0.1:0", interval=0.3,
                            podresources=PodResourcesConfig(socket=kubelet, timeout=1.0, driver_names=DRIVERS))
    with Exporter(config).start() as exp:
        body = get(f"{exp.url}/metrics")[2]
    rows = sorted(tuple(dict(lab)[k] for k in ("device", "namespace", "pod", "container", "claim"))
                  for (name, lab), v in samples(body).items() if name == "npu_device_pod_info" and v == 1.0)
    devices = {dict(lab)["device"]: dict(lab)["vendor"] for (name, lab), _ in samples(body).items()
               if name == "npu_device_info"}
    # node-a holds RNGD, RNGD, ATOM, ATOM: the furiosa driver's "npu3" is not device 3 (a rebellions
    # ATOM), so only devices 0 (device plugin) and 1 (claim) are attributed
    assert devices == {"0": "furiosa", "1": "furiosa", "2": "rebellions", "3": "rebellions"}
    assert rows == [("0", "search", "ranker-7d9f", "server", ""),
                    ("1", "llm", "vllm-0", "engine", "vllm-0-npus"),
                    ("1", "llm", "vllm-0", "sidecar", "vllm-0-npus")]


def test_get_response_carries_the_same_claims(kubelet: Path) -> None:
    with grpc.insecure_channel(f"unix://{kubelet}") as channel:
        stub = api_pb2_grpc.PodResourcesListerStub(channel)
        response = stub.Get(api_pb2.GetPodResourcesRequest(pod_name="vllm-0", pod_namespace="llm"), timeout=2)
        attribution = attribution_from(response, DEFAULT_RESOURCE_NAMES, DRIVERS)
        engine = PodRef("llm", "vllm-0", "engine")
        held = [(a.resource_name, a.device_id, a.pool, a.claim) for a in attribution.allocations if a.pod == engine]
        assert held == [("rngd.furiosa.ai", "npu1", "node-a", "vllm-0-npus"),
                        ("rngd.furiosa.ai", "npu3", "node-a", "vllm-0-npus")]
        assert attribution.holders_for(["rngd.furiosa.ai"], {"3"}) == (Holder(engine, "vllm-0-npus"),)
        # without a driver mapping the claim is not ours; a device-plugin name never matches DRA devices
        assert attribution_from(response, DEFAULT_RESOURCE_NAMES, {}).allocations == ()
        assert attribution.holders_for(["furiosa.ai/rngd"], {"1"}) == ()
        with pytest.raises(grpc.RpcError) as err:
            stub.Get(api_pb2.GetPodResourcesRequest(pod_name="nope", pod_namespace="llm"), timeout=2)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_dra_names_match_by_id_uuid_or_indexed_name() -> None:
    pod = api_pb2.PodResources(namespace="ns", name="p", containers=[_container("c", claims=(
        ("cl", "ns", (("gpu.nvidia.com", "pool", "gpu-0"), ("gpu.nvidia.com", "pool", "GPU-9cf3f98f"),
                      ("gpu.nvidia.com", "pool", "gpu-0-mig-1g10gb"))),))])
    attribution = attribution_from(api_pb2.ListPodResourcesResponse(pod_resources=[pod]), {}, DEFAULT_DRIVER_NAMES)
    ref = Holder(PodRef("ns", "p", "c"), "cl")
    assert attribution.holders_for(["gpu.nvidia.com"], {"0"}) == (ref,)  # "gpu-0"
    assert attribution.holders_for(["gpu.nvidia.com"], {"5", "GPU-9cf3f98f"}) == (ref,)  # by UUID
    assert attribution.holders_for(["gpu.nvidia.com"], {"1"}) == ()


def test_driver_names_in_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "exporter.yaml"
    path.write_text("podresources: {driver_names: {furiosa: [rngd.furiosa.ai]}}\n")
    assert load(path).podresources.driver_names == {"furiosa": ("rngd.furiosa.ai",)}
    path.write_text("podresources: {driver_names: {furiosa: rngd.furiosa.ai}}\n")
    with pytest.raises(ConfigError, match="podresources.driver_names.furiosa"):
        load(path)

"""Traces over real OTLP: an in-process gRPC TraceService (and an OTLP/HTTP endpoint) receives what
the instrumentation exports, from a live server's requests and from the simulated fleet.

The fleet tests are the issue's acceptance: a request slowed by F2 (throttled clock) or carrying an
F5 host fallback is kept, its spans say where the time went, and its trace id is the exemplar that
the ``sim`` backend reads and the exporter puts on the latency bucket of an OpenMetrics scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest

from npuobs.devices.base import WorkloadReading
from npuobs.devices.registry import create
from npuobs.exporter.families import workload
from npuobs.instrumentation import Instrumentation, otlp_tracer_provider
from npuobs.instrumentation import tracing as T
from npuobs.instrumentation.otlp import ENDPOINT_ENV
from npuobs.simulator import runtime
from npuobs.simulator.clock import VirtualClock
from npuobs.simulator.fleet import Fleet, FleetConfig

pytestmark = pytest.mark.integration  # real gRPC and HTTP OTLP receivers

NODE = "node-0"


@dataclass
class Received:
    """A span as the collector got it, with its resource's attributes."""

    span: Span
    resource: dict[str, Any]

    @property
    def attrs(self) -> dict[str, Any]:
        return {kv.key: _value(kv.value) for kv in self.span.attributes}

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def seconds(self) -> float:
        return (self.span.end_time_unix_nano - self.span.start_time_unix_nano) / 1e9


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, kind)


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """The receiving end of OTLP: keeps every exported span."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self._lock = threading.Lock()

    def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,  # noqa: N802 - the proto's name
               context: Any = None) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            for rs in request.resource_spans:
                resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
                self.spans += [Received(s, resource) for ss in rs.scope_spans for s in ss.spans]
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> tuple[Received, list[Received]]:
        """(root, children in start order) of one trace; asserts it is one well-formed tree."""
        spans = [s for s in self.spans if s.trace_id == trace_id]
        roots = [s for s in spans if not s.span.parent_span_id]
        assert len(roots) == 1, f"trace {trace_id}: {len(roots)} roots among {len(spans)} spans"
        root = roots[0]
        children = sorted((s for s in spans if s is not root), key=lambda s: s.span.start_time_unix_nano)
        for c in children:
            assert c.span.parent_span_id == root.span.span_id
            assert root.span.start_time_unix_nano <= c.span.start_time_unix_nano
            assert c.span.end_time_unix_nano <= root.span.end_time_unix_nano
        return root, children


@pytest.fixture
def grpc_collector() -> Iterator[tuple[Collector, str]]:
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield collector, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@pytest.fixture
def http_collector() -> Iterator[tuple[Collector, str]]:
    collector = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
            reply = collector.Export(trace_service_pb2.ExportTraceServiceRequest.FromString(body)).SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            """Quiet: the test asserts on what arrived."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield collector, f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        server.shutdown()
        server.server_close()


# --- a live server -------------------------------------------------------------------------------

def test_live_request_tree_over_otlp_grpc(grpc_collector: tuple[Collector, str]) -> None:
    collector, endpoint = grpc_collector
    provider = otlp_tracer_provider(endpoint, service_name="infer-server")
    i = Instrumentation(registry=CollectorRegistry(), tracer_provider=provider, node="n1", device="3",
                        vendor="furiosa", model="resnet50", slo_latency_seconds=0.01, head_sample_ratio=0.0)
    try:
        with i.inference(tenant="search", batch_size=8, precision="int8") as h:
            with h.queue_wait():
                pass
            with h.preprocess():
                pass
            with h.device_execute(ops=12, attributes={T.A_CLOCK: 5e8, T.A_CLOCK_MAX: 1e9, T.A_THROTTLED: True}):
                threading.Event().wait(0.02)
            with h.host_fallback_op("gelu"):
                pass
            with h.postprocess():
                pass
        provider.force_flush()
    finally:
        provider.shutdown()
    root, children = collector.trace(h.trace_id)
    assert root.resource["service.name"] == "infer-server"
    assert root.span.name == "inference" and root.span.kind == Span.SPAN_KIND_INTERNAL
    assert root.attrs == {T.A_NODE: "n1", T.A_DEVICE: "3", T.A_VENDOR: "furiosa", T.A_MODEL: "resnet50",
                          T.A_TENANT: "search", T.A_BATCH: 8, T.A_PRECISION: "int8", T.A_OUTCOME: "success",
                          T.A_FALLBACK_OPS: ("gelu",)}
    assert [c.span.name for c in children] == ["queue_wait", "preprocess", "device_execute", "host_fallback_op",
                                               "postprocess"]
    execute, fallback = children[2], children[3]
    assert execute.attrs == {T.A_OPS: 12, T.A_CLOCK: 5e8, T.A_CLOCK_MAX: 1e9, T.A_THROTTLED: True}
    assert execute.seconds >= 0.02 and execute.seconds / root.seconds > 0.5  # where the time went
    assert fallback.attrs == {T.A_OP: "gelu", T.A_PRECISION: "fp32"}


def test_live_error_over_otlp_http(http_collector: tuple[Collector, str]) -> None:
    collector, endpoint = http_collector
    provider = otlp_tracer_provider(endpoint)
    i = Instrumentation(registry=CollectorRegistry(), tracer_provider=provider, head_sample_ratio=0.0)
    try:
        with pytest.raises(TimeoutError), i.inference(tenant="ads") as h, h.device_execute(ops=1):
            raise TimeoutError
        provider.force_flush()
    finally:
        provider.shutdown()
    root, (execute,) = collector.trace(h.trace_id)
    assert root.span.status.code == Status.STATUS_CODE_ERROR and root.attrs[T.A_OUTCOME] == "error"
    assert execute.span.status.message == "TimeoutError"


# --- the simulated fleet --------------------------------------------------------------------------

@pytest.fixture
def traced_fleet(grpc_collector: tuple[Collector, str], tmp_path: Path,
                 request: pytest.FixtureRequest) -> Iterator[tuple[Fleet, Collector]]:
    """One simulated device tracing to the collector; ``request.param`` = TracingConfig overrides."""
    collector, endpoint = grpc_collector
    provider = otlp_tracer_provider(endpoint)
    runtime.configure_tracing(runtime.TracingConfig(provider, **request.param))
    try:
        fleet = Fleet(FleetConfig.single_node(1, seed=3, node=NODE), tmp_path, VirtualClock())
        yield fleet, collector
    finally:
        runtime.configure_tracing(None)
        provider.shutdown()


def published(fleet: Fleet, tenant: str = "team-search") -> WorkloadReading:
    """The device's workload as the exporter reads it: through the ``sim`` backend."""
    snap = create("sim", state_dir=fleet.state_dir, node=NODE).sample()
    return next(w for w in snap.workloads if w.device == "0" and w.tenant == tenant)


def openmetrics(fleet: Fleet) -> str:
    """The exporter's runtime families for the published state, as an OpenMetrics scrape shows them."""
    snap = create("sim", state_dir=fleet.state_dir, node=NODE).sample()

    class Families:
        def collect(self) -> list[Metric]:
            return workload.build(NODE, snap)

    return generate_latest(Families()).decode()


def flush(fleet: Fleet) -> None:
    fleet.devices[0].runtime.instr.tracer_provider.force_flush()


@pytest.mark.parametrize("traced_fleet", [{"slo_latency_seconds": 0.01, "head_sample_ratio": 0.0}], indirect=True)
def test_f2_slow_request_trace_is_the_published_exemplar(traced_fleet: tuple[Fleet, Collector]) -> None:
    fleet, collector = traced_fleet
    fleet.run(60)
    fleet.faults.inject("F2", node=NODE, device="0", now=fleet.clock.now)
    fleet.run(480)  # the die heats past its threshold and the clock halves
    flush(fleet)
    w = published(fleet)
    assert w.latency_exemplar is not None
    trace_id, seconds = w.latency_exemplar
    root, children = collector.trace(trace_id)
    assert root.seconds == pytest.approx(seconds, abs=1e-6) and seconds > 0.01  # kept by the tail rule
    assert root.attrs[T.A_DEVICE] == "0" and root.attrs[T.A_TENANT] == "team-search"
    assert children[0].span.name == "queue_wait"
    executes = [c for c in children if c.span.name == "device_execute"]
    clock_max = fleet.devices[0].spec.clock_max_hz
    assert executes and all(e.attrs[T.A_THROTTLED] and e.attrs[T.A_CLOCK] == clock_max / 2 for e in executes)
    # the children account for the whole request: waiting, then running at half clock
    assert sum(c.seconds for c in children) == pytest.approx(root.seconds, abs=1e-5)
    bucket = next(line for line in openmetrics(fleet).splitlines() if f'trace_id="{trace_id}"' in line)
    assert bucket.startswith("npu_inference_latency_seconds_bucket{") and 'tenant="team-search"' in bucket


@pytest.mark.parametrize("traced_fleet", [{"head_sample_ratio": 1.0, "max_traces_per_second": 2}], indirect=True)
def test_f5_host_fallback_shows_in_kept_traces(traced_fleet: tuple[Fleet, Collector]) -> None:
    fleet, collector = traced_fleet
    fleet.run(70)  # past the cold start, whose slow requests stay the exemplar for a minute
    fleet.faults.inject("F5", node=NODE, device="0", now=fleet.clock.now)
    start = fleet.clock.now
    fleet.run(20)
    flush(fleet)
    roots = [s for s in collector.spans if s.span.name == "inference"
             and s.span.start_time_unix_nano >= start * 1e9 + 1e9]  # arrived after the fault took effect
    assert 20 <= len(roots) <= 2 * 21  # the per-second budget holds with every request head-sampled
    trace_id, _ = published(fleet).latency_exemplar
    root, children = collector.trace(trace_id)
    assert root.attrs[T.A_FALLBACK_OPS] == ("gelu",)
    fallback = [c for c in children if c.span.name == "host_fallback_op"]
    assert [f.attrs[T.A_OP] for f in fallback] == ["gelu"] and fallback[0].attrs[T.A_PRECISION] == "fp32"
    names = [c.span.name for c in children]
    assert names[0] == "queue_wait" and names[1:] == ["device_execute", "host_fallback_op", "device_execute"]


def test_fleet_traces_from_the_environment(grpc_collector: tuple[Collector, str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    collector, endpoint = grpc_collector
    monkeypatch.setenv(ENDPOINT_ENV, endpoint)
    fleet = Fleet(FleetConfig.single_node(1, seed=3, node=NODE), tmp_path, VirtualClock())
    provider = fleet.devices[0].runtime.instr.tracer_provider
    try:
        fleet.run(60)
        provider.force_flush()
    finally:
        provider.shutdown()
    assert {s.resource["service.name"] for s in collector.spans} == {"npuobs-sim"}
    assert any(s.span.name == "model.load" for s in collector.spans)
    trace_id, _ = published(fleet).latency_exemplar
    root, _ = collector.trace(trace_id)
    assert root.attrs[T.A_NODE] == NODE


def test_fleet_without_tracing_still_publishes_exemplars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINT_ENV, raising=False)
    fleet = Fleet(FleetConfig.single_node(1, seed=3, node=NODE), tmp_path, VirtualClock())
    assert not fleet.devices[0].runtime.instr.tracing
    fleet.run(30)
    trace_id, seconds = published(fleet).latency_exemplar
    assert len(bytes.fromhex(trace_id)) == 16 and seconds > 0


@pytest.mark.parametrize("traced_fleet", [{"head_sample_ratio": 0.5}], indirect=True)
def test_tracing_does_not_change_the_simulation(traced_fleet: tuple[Fleet, Collector], tmp_path: Path) -> None:
    traced, _ = traced_fleet
    traced.run(30)
    runtime.configure_tracing(runtime.TracingConfig())
    plain = Fleet(FleetConfig.single_node(1, seed=3, node=NODE), tmp_path / "plain", VirtualClock())
    plain.run(30)
    for tenant in ("team-search", "batch-jobs", "canary"):
        a, b = published(traced, tenant), published(plain, tenant)
        assert (a.latency, a.requests_total) == (b.latency, b.requests_total)

"""OTLP push against real receivers started in-process: the OTLP gRPC MetricsService and an
OTLP/HTTP protobuf endpoint. Asserts what arrived: hw.* metrics with their attributes, and the
latency histogram with the runtime's buckets."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.metrics.v1.metrics_pb2 import AGGREGATION_TEMPORALITY_CUMULATIVE

from npuobs.devices.sim import SimBackend
from npuobs.exporter import Exporter, ExporterConfig, OtlpConfig
from npuobs.schema import LATENCY_BUCKETS
from npuobs.stack import free_port

pytestmark = pytest.mark.integration  # real gRPC and HTTP OTLP receivers


class Received:
    """Export requests a receiver accepted, with a condition to wait on."""

    def __init__(self) -> None:
        self.requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.cond = threading.Condition()

    def add(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self.cond:
            self.requests.append(request)
            self.cond.notify_all()

    def wait(self, timeout: float = 15.0) -> metrics_service_pb2.ExportMetricsServiceRequest:
        with self.cond:
            assert self.cond.wait_for(lambda: self.requests, timeout), "no OTLP export arrived"
            return self.requests[0]


class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request, context):  # noqa: N802 - generated service naming
        self.received.add(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@pytest.fixture
def grpc_receiver() -> Iterator[tuple[str, Received]]:
    received = Received()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", received
    server.stop(grace=None)


@pytest.fixture
def http_receiver() -> Iterator[tuple[str, Received]]:
    received = Received()
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            paths.append(self.path)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            assert self.headers["Content-Type"] == "application/x-protobuf"
            request = metrics_service_pb2.ExportMetricsServiceRequest()
            request.ParseFromString(body)
            received.add(request)
            reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    assert set(paths) <= {"/v1/metrics"}


def _points(request) -> dict[str, list[dict[str, Any]]]:
    """metric name -> data points as {attributes..., "value": v}."""
    out: dict[str, list[dict[str, Any]]] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.HasField("histogram"):
                    continue  # see _histograms
                data = m.gauge if m.HasField("gauge") else m.sum
                for p in data.data_points:
                    attrs = {a.key: a.value.string_value for a in p.attributes}
                    attrs["value"] = p.as_double if p.HasField("as_double") else p.as_int
                    out.setdefault(m.name, []).append(attrs)
    return out


def _histograms(request) -> dict[str, list[Any]]:
    """metric name -> histogram data points (protobuf), for cumulative histograms."""
    out: dict[str, list[Any]] = {}
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.HasField("histogram"):
                    assert m.histogram.aggregation_temporality == AGGREGATION_TEMPORALITY_CUMULATIVE
                    assert m.unit == "s"
                    out.setdefault(m.name, []).extend(m.histogram.data_points)
    return out


def _resource(request) -> dict[str, str]:
    return {a.key: a.value.string_value for a in request.resource_metrics[0].resource.attributes}


def _export(sim_state: Path, endpoint: str, protocol: str, received: Received):
    otlp = OtlpConfig(endpoint=endpoint, protocol=protocol, interval=0.3, timeout=5)
    cfg = ExporterConfig(backend="sim", node="node-a", state_dir=sim_state, listen="127.0.0.1:0", otlp=otlp)
    with Exporter(cfg).start():
        return received.wait()


def test_otlp_grpc_delivers_hw_semconv_metrics(sim_state: Path, grpc_receiver: tuple[str, Received]) -> None:
    endpoint, received = grpc_receiver
    request = _export(sim_state, endpoint, "grpc", received)
    assert _resource(request)["host.name"] == "node-a"
    assert _resource(request)["service.name"] == "npuobs-exporter"
    points = _points(request)
    for name in ("hw.status", "hw.temperature", "hw.power", "hw.energy", "hw.errors", "npu.utilization",
                 "npu.resets", "npu.inference.requests"):
        assert points.get(name), f"{name} missing from the OTLP export"
    temps = points["hw.temperature"]
    assert sorted(p["hw.id"] for p in temps) == ["0", "1", "2", "3"]
    assert all(p["hw.type"] == "npu" and 0 < p["value"] < 150 for p in temps)
    ok = [p for p in points["hw.status"] if p["hw.state"] == "ok" and p["hw.id"] == "0"]
    assert ok == [{"hw.id": "0", "hw.type": "npu", "hw.state": "ok", "hw.vendor": "furiosa", "hw.model": "RNGD",
                   "hw.driver_version": "2025.3.0", "hw.firmware_version": "1.7.0", "value": 1}]
    assert {p["error.type"] for p in points["hw.errors"]} >= {"ecc_uncorrected", "pcie"}
    assert all(p["value"] > 0 for p in points["hw.energy"])
    # the latency histogram, as the runtime aggregated it: same buckets and counts as the Prometheus side
    latency = _histograms(request)["npu.inference.duration"]
    snap = SimBackend(state_dir=sim_state, node="node-a").sample()
    expected = {(w.device, w.tenant): w.latency for w in snap.workloads}
    got = {}
    for point in latency:
        attrs = {a.key: a.value.string_value for a in point.attributes}
        assert attrs["npu.model"] == "digits-mlp"
        got[(attrs["hw.id"], attrs["npu.tenant"])] = point
    assert set(got) == set(expected)
    for key, hist in expected.items():
        point = got[key]
        assert list(point.explicit_bounds) == [b for b, _ in hist.buckets[:-1]] == list(LATENCY_BUCKETS)
        assert list(itertools.accumulate(point.bucket_counts)) == [n for _, n in hist.buckets]
        assert point.count == hist.count and point.sum == pytest.approx(hist.sum)
        assert not point.HasField("min") and point.start_time_unix_nano < point.time_unix_nano
    assert sum(p.count for p in latency) > 100  # the fleet served requests


def test_otlp_http_delivers_to_v1_metrics(sim_state: Path, http_receiver: tuple[str, Received]) -> None:
    endpoint, received = http_receiver
    request = _export(sim_state, endpoint, "http", received)
    points = _points(request)
    assert len(points["hw.power"]) == 4 and points["npu.inference.requests"]
    assert len(_histograms(request)["npu.inference.duration"]) == 16  # 4 devices x 4 tenants (canary included)

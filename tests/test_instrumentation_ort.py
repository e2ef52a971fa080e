"""The ONNX Runtime adapter on a tiny model built here: ORT's own node -> execution-provider
assignment (from its profile) becomes the host/device op accounting. Only the CPU provider exists
here, so the tests assert the accounting, not acceleration."""

from __future__ import annotations

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from npuobs.instrumentation import Instrumentation  # noqa: E402
from npuobs.instrumentation.ort import InstrumentedSession, placements_from_profile  # noqa: E402

DEV = {"node": "n1", "device": "0", "vendor": "sim"}
FEED = {"x": np.ones((2, 4), np.float32)}


def tiny_model() -> bytes:
    """x @ w + b -> relu -> softmax: four nodes."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="matmul"),
             helper.make_node("Add", ["h", "b"], ["h2"], name="bias"),
             helper.make_node("Relu", ["h2"], ["h3"], name="relu"),
             helper.make_node("Softmax", ["h3"], ["y"], name="softmax", axis=-1)]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
        [numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3) / 10, "w"),
         numpy_helper.from_array(np.zeros(3, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def unoptimized() -> object:
    """Graph optimizations off, so ORT runs the four nodes as built (it would fuse them otherwise)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return options


def session(registry: CollectorRegistry, **kw) -> InstrumentedSession:
    instr = Instrumentation(registry=registry, model="tiny", **DEV)
    return InstrumentedSession(instr, tiny_model(), FEED, providers=["CPUExecutionProvider"],
                               sess_options=unoptimized(), **kw)


def test_cpu_placement_is_host_fallback_for_every_node() -> None:
    registry = CollectorRegistry()
    s = session(registry, precision="fp32")
    assert [(n.node, n.op) for n in s.nodes] == [("matmul", "MatMul"), ("bias", "Add"), ("relu", "Relu"),
                                                  ("softmax", "Softmax")]
    assert s.provider_counts == {"CPUExecutionProvider": 4} and s.host_ratio == 1.0
    for _ in range(3):
        (y,) = s.run(None, FEED, tenant="search", batch_size=2)
    assert y.shape == (2, 3) and np.allclose(y.sum(axis=1), 1.0)
    assert registry.get_sample_value("npu_ops_total", {**DEV, "placement": "host"}) == 12
    assert registry.get_sample_value("npu_ops_total", {**DEV, "placement": "device"}) == 0
    for op in ("MatMul", "Add", "Relu", "Softmax"):
        assert registry.get_sample_value("npu_op_seconds_total", {**DEV, "op": op, "placement": "host"}) > 0
    labels = {"node": "n1", "device": "0", "model": "tiny", "tenant": "search"}
    assert registry.get_sample_value("npu_inference_requests_total", {**labels, "outcome": "success"}) == 3
    assert registry.get_sample_value("npu_model_load_seconds", labels) > 0


def test_an_accelerator_provider_counts_as_device() -> None:
    registry = CollectorRegistry()
    s = session(registry, host_providers=frozenset())  # as if the CPU provider were the NPU's
    s.run(["y"], FEED, tenant="search")
    assert s.host_ratio == 0.0
    assert registry.get_sample_value("npu_ops_total", {**DEV, "placement": "device"}) == 4
    assert registry.get_sample_value("npu_ops_total", {**DEV, "placement": "host"}) == 0


def test_profile_parsing_splits_nodes_by_provider() -> None:
    def kernel(node: str, op: str, provider: str, dur: int) -> dict:
        return {"cat": "Node", "name": f"{node}_kernel_time", "dur": dur, "args": {"op_name": op, "provider": provider}}

    events = [{"cat": "Session", "name": "model_run", "dur": 900},
              kernel("conv", "Conv", "NpuExecutionProvider", 300),
              {"cat": "Node", "name": "gelu_fence_before", "dur": 0, "args": {"op_name": "Gelu"}},
              kernel("gelu", "Gelu", "CPUExecutionProvider", 500),
              kernel("conv", "Conv", "NpuExecutionProvider", 280)]  # a second profiled run
    nodes = placements_from_profile(events)
    assert [(n.node, n.provider, n.seconds) for n in nodes] == [("conv", "NpuExecutionProvider", 300e-6),
                                                               ("gelu", "CPUExecutionProvider", 500e-6)]


def test_optimized_graph_is_accounted_as_ort_runs_it() -> None:
    instr = Instrumentation(registry=CollectorRegistry(), model="tiny", **DEV)
    s = InstrumentedSession(instr, tiny_model(), FEED, providers=["CPUExecutionProvider"])
    assert sum(s.provider_counts.values()) == len(s.nodes) < 4  # ORT fused nodes; the profile says which


def test_a_traced_run_names_its_providers_and_host_ops() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    instr = Instrumentation(registry=CollectorRegistry(), tracer_provider=provider, head_sample_ratio=1.0, **DEV)
    s = InstrumentedSession(instr, tiny_model(), FEED, providers=["CPUExecutionProvider"],
                            sess_options=unoptimized())
    s.run(None, FEED, tenant="search")
    by_name = {sp.name: sp for sp in spans.get_finished_spans()}
    assert set(by_name) == {"model.load", "inference", "device_execute"}
    assert by_name["device_execute"].attributes["onnxruntime.providers"] == ("CPUExecutionProvider",)
    assert sorted(by_name["inference"].attributes["npu.fallback_ops"]) == ["Add", "MatMul", "Relu", "Softmax"]

"""Tests for the op graph: device placement, host fallback (F5), work counts, corruption (F8)."""

from __future__ import annotations

import numpy as np
import pytest

from npuobs.simulator.graph import (
    CORRUPT_FRACTION,
    DEVICE_OP_SETS,
    HEALTHY_OPS,
    build_graph,
    execute,
    golden_check,
)
from npuobs.simulator.model import QuantizedModel, accuracy, load_dataset, train_fp32

HEALTHY_SEQUENCE = [
    "quantize",
    "matmul_int8",
    "bias_add",
    "relu",
    "requantize",
    "matmul_int8",
    "bias_add",
    "dequantize",
    "softmax",
]


def test_device_models_support_the_healthy_graph_but_not_gelu() -> None:
    assert set(DEVICE_OP_SETS) == {"RNGD", "ATOM", "Inferentia2", "Gaudi2"}
    for supported in DEVICE_OP_SETS.values():
        assert "gelu" not in supported and HEALTHY_OPS <= supported


@pytest.mark.parametrize("device", sorted(DEVICE_OP_SETS))
def test_healthy_graph_runs_entirely_on_device(quantized: QuantizedModel, device: str) -> None:
    graph = build_graph(quantized)
    assert [op.kind for op in graph.ops] == HEALTHY_SEQUENCE
    x = load_dataset().x_test
    run = execute(graph, quantized, x, DEVICE_OP_SETS[device])
    assert run.host_ops == 0
    assert all(r.placement == "device" for r in run.records)
    assert np.array_equal(run.logits, quantized.forward(x))
    assert np.array_equal(run.predictions, np.argmax(run.probabilities, axis=1))
    assert np.allclose(run.probabilities.sum(axis=1), 1.0)


def test_gelu_variant_falls_back_to_host_for_gelu_only(quantized: QuantizedModel) -> None:
    data = load_dataset()
    graph = build_graph(quantized, activation="gelu")
    run = execute(graph, quantized, data.x_test, DEVICE_OP_SETS["RNGD"])
    assert [r.op for r in run.records if r.placement == "host"] == ["gelu"]
    assert run.host_ops == 1
    assert accuracy(run.logits, data.y_test) >= 0.85
    assert not np.array_equal(run.logits, quantized.forward(data.x_test))


def test_host_fallback_does_the_real_work(quantized: QuantizedModel) -> None:
    x = load_dataset().x_test
    graph = build_graph(quantized)
    on_host = execute(graph, quantized, x, frozenset())
    assert on_host.host_ops == len(graph.ops)
    on_device = execute(graph, quantized, x, HEALTHY_OPS)
    assert np.mean(on_host.predictions == on_device.predictions) >= 0.99
    assert np.allclose(on_host.logits, on_device.logits, atol=0.05)


def test_device_placement_of_an_op_without_kernel_is_refused(quantized: QuantizedModel) -> None:
    graph = build_graph(quantized, activation="gelu")
    with pytest.raises(ValueError, match="no device kernel"):
        execute(graph, quantized, load_dataset().x_test[:4], HEALTHY_OPS | {"gelu"})
    with pytest.raises(ValueError):
        build_graph(quantized, activation="tanh")  # type: ignore[arg-type]


def test_records_count_work_from_layer_shapes(quantized: QuantizedModel) -> None:
    batch = 50
    graph = build_graph(quantized)
    run = execute(graph, quantized, load_dataset().x_test[:batch], HEALTHY_OPS)
    matmuls = [r for r in run.records if r.op == "matmul_int8"]
    shapes = [layer.w_q.shape for layer in quantized.layers]
    assert [r.macs for r in matmuls] == [batch * k * n for k, n in shapes]
    assert [r.elements for r in matmuls] == [batch * k + k * n + batch * n for k, n in shapes]
    assert all(r.macs == 0 and r.elements > 0 for r in run.records if r.op != "matmul_int8")
    assert run.records[0].elements == 2 * batch * shapes[0][0]


def test_graph_from_another_model_is_refused(quantized: QuantizedModel) -> None:
    data = load_dataset()
    wide = QuantizedModel.from_fp32(train_fp32(hidden=32), data.x_calib)
    with pytest.raises(ValueError, match="does not match"):
        execute(build_graph(wide), quantized, data.x_test[:4], HEALTHY_OPS)
    with pytest.raises(ValueError, match="input shape"):
        execute(build_graph(quantized), quantized, data.x_test[:4, :10], HEALTHY_OPS)


def test_output_corruption_is_deterministic_and_counted_by_the_canary(quantized: QuantizedModel) -> None:
    x = load_dataset().x_test
    graph = build_graph(quantized)
    clean = execute(graph, quantized, x, HEALTHY_OPS)
    first = execute(graph, quantized, x, HEALTHY_OPS, corrupt_output_rng=np.random.default_rng(7))
    again = execute(graph, quantized, x, HEALTHY_OPS, corrupt_output_rng=np.random.default_rng(7))
    flipped = int(np.count_nonzero(first.predictions != clean.predictions))
    assert flipped == max(1, round(CORRUPT_FRACTION * len(x)))
    assert np.array_equal(first.predictions, again.predictions)
    assert np.array_equal(first.predictions, np.argmax(first.logits, axis=1))
    assert np.array_equal(execute(graph, quantized, x, HEALTHY_OPS).predictions, clean.predictions)

    expected = clean.predictions
    assert golden_check(graph, quantized, HEALTHY_OPS, x, expected) == 0
    corrupted = golden_check(
        graph, quantized, HEALTHY_OPS, x, expected, corrupt_output_rng=np.random.default_rng(7)
    )
    assert corrupted == flipped
    one_row = golden_check(
        graph, quantized, HEALTHY_OPS, x[:1], expected[:1], corrupt_output_rng=np.random.default_rng(0)
    )
    assert one_row == 1

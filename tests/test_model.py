"""Tests for the simulator's real model: data, FP32 training, exact INT8 kernels, fault F3 hook."""

from __future__ import annotations

import numpy as np
import pytest

from npuobs.simulator.model import (
    CALIB_SIZE,
    INT8_MAX,
    MAX_EXACT_K,
    TEST_SIZE,
    QuantizedModel,
    QuantLayer,
    accuracy,
    int8_matmul,
    int8_matmul_reference,
    load_dataset,
    train_fp32,
)


def _random_int8(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    return rng.integers(-INT8_MAX, INT8_MAX + 1, size=shape, dtype=np.int8)


def test_dataset_splits_are_disjoint_scaled_and_deterministic() -> None:
    data = load_dataset(0)
    assert len(data.x_test) == TEST_SIZE and len(data.x_calib) == CALIB_SIZE
    assert len(data.x_train) + CALIB_SIZE + TEST_SIZE == 1797
    for x in (data.x_train, data.x_calib, data.x_test):
        assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    rows = {r.tobytes() for r in data.x_test}
    assert not any(r.tobytes() in rows for r in data.x_calib)
    fresh = load_dataset.__wrapped__(0)
    assert np.array_equal(fresh.x_train, data.x_train) and np.array_equal(fresh.y_test, data.y_test)


@pytest.mark.parametrize(
    "m,k,n", [(360, 64, 64), (360, 64, 10), (32, 512, 48), (16, 1024, 16), (16, 1040, 16)]
)
def test_int8_matmul_is_bit_exact(m: int, k: int, n: int) -> None:
    rng = np.random.default_rng(k * n)
    a_q, w_q = _random_int8(rng, (m, k)), _random_int8(rng, (k, n))
    fast = int8_matmul(a_q, w_q)
    assert fast.dtype == np.int32
    assert np.array_equal(fast, int8_matmul_reference(a_q, w_q))


def test_int8_matmul_is_exact_at_the_extreme_sums() -> None:
    # All +/-127 at K=1040 puts every partial sum at the edge of float32's exact integers.
    a_q = np.full((4, MAX_EXACT_K), INT8_MAX, dtype=np.int8)
    w_q = np.full((MAX_EXACT_K, 3), -INT8_MAX, dtype=np.int8)
    assert np.all(int8_matmul(a_q, w_q) == -MAX_EXACT_K * INT8_MAX**2)
    full_range = np.full((2, 1024), -128, dtype=np.int8)
    assert np.all(int8_matmul(full_range, full_range.T.copy()) == 2**24)


def test_int8_matmul_rejects_inexact_depths_and_bad_operands() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="exceeds 1040"):
        int8_matmul(_random_int8(rng, (2, MAX_EXACT_K + 1)), _random_int8(rng, (MAX_EXACT_K + 1, 2)))
    with_min = np.full((2, 1030), -128, dtype=np.int8)
    with pytest.raises(ValueError, match="symmetric"):
        int8_matmul(with_min, with_min.T.copy())
    with pytest.raises(TypeError):
        int8_matmul(np.zeros((2, 4), np.int16), np.zeros((4, 2), np.int8))
    with pytest.raises(ValueError, match="shapes"):
        int8_matmul(np.zeros((2, 4), np.int8), np.zeros((5, 2), np.int8))


def test_layer_with_too_deep_reduction_is_refused() -> None:
    k = MAX_EXACT_K + 1
    with pytest.raises(ValueError, match="exceeds 1040"):
        QuantLayer(np.zeros((k, 2), np.int8), np.ones(2, np.float32), np.zeros(2, np.int32), 1.0)


def test_fp32_and_int8_accuracy_on_held_out_data(quantized: QuantizedModel) -> None:
    data = load_dataset()
    fp32 = accuracy(train_fp32().forward(data.x_test), data.y_test)
    int8 = accuracy(quantized.forward(data.x_test), data.y_test)
    assert fp32 >= 0.95
    assert int8 >= 0.9
    assert abs(fp32 - int8) <= 0.03


def test_quantized_model_uses_symmetric_int8_and_int32_bias(quantized: QuantizedModel) -> None:
    for layer in quantized.layers:
        assert layer.w_q.dtype == np.int8 and np.abs(layer.w_q).max() == INT8_MAX
        assert layer.b_q.dtype == np.int32 and layer.w_scale.shape == (layer.w_q.shape[1],)
    assert quantized.forward(load_dataset().x_test[:5]).dtype == np.float32


@pytest.mark.parametrize("factor", [4.0, 0.25])
def test_corrupted_scales_cost_accuracy_without_touching_the_original(
    quantized: QuantizedModel, factor: float
) -> None:
    data = load_dataset()
    before = quantized.forward(data.x_test)
    scales = [(layer.in_scale, layer.w_scale.copy()) for layer in quantized.layers]
    for seed in range(5):
        corrupted = quantized.with_corrupted_scales(factor, np.random.default_rng(seed))
        drop = accuracy(before, data.y_test) - accuracy(corrupted.forward(data.x_test), data.y_test)
        assert drop > 0.10
    assert np.array_equal(quantized.forward(data.x_test), before)
    for layer, (in_scale, w_scale) in zip(quantized.layers, scales, strict=True):
        assert layer.in_scale == in_scale and np.array_equal(layer.w_scale, w_scale)
    with pytest.raises(ValueError):
        quantized.with_corrupted_scales(0.0, np.random.default_rng(0))


def test_training_is_deterministic_and_seed_dependent() -> None:
    first = train_fp32.__wrapped__(0)
    second = train_fp32.__wrapped__(0)
    for a, b in zip(first.weights + first.biases, second.weights + second.biases, strict=True):
        assert np.array_equal(a, b)
    assert not np.array_equal(first.weights[0], train_fp32.__wrapped__(1).weights[0])
    assert train_fp32(0) is train_fp32(0)


def test_accuracy_checks_lengths() -> None:
    assert accuracy(np.eye(3, dtype=np.float32), np.array([0, 1, 0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        accuracy(np.eye(3), np.array([0, 1]))

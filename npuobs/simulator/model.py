"""The real model behind the simulated NPU: an MLP on scikit-learn's digits, in FP32 and INT8.

Why real: the fleet's observability signals (accuracy loss from bad calibration, wrong outputs,
work counts) must come from computation that actually happens, not from invented numbers. So the
simulator trains a genuine classifier on genuine data and quantizes it the way NPU compilers do
(post-training INT8, per-channel weights, per-tensor activations). Everything is deterministic
and offline: the 1,797 digit images ship inside scikit-learn and all randomness is seeded.

The INT8 matmul runs as a float32 BLAS matmul of int8-valued arrays. That is exact, not an
approximation: every product and every partial sum is an integer no larger than K * 127**2 in
magnitude, and float32 represents every integer up to 2**24 exactly, whatever order BLAS sums in.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import numpy as np

INT8_MAX = 127
"""Symmetric INT8 range [-127, 127]: -128 is never produced, so negation cannot overflow."""

MAX_EXACT_K = 2**24 // (INT8_MAX * INT8_MAX)
"""Largest reduction depth (1040) for which K * 127**2 <= 2**24, i.e. the float32 path is exact."""

_ANY_INT8_EXACT_K = 2**24 // (128 * 128)
"""Up to K = 1024 even -128 operands keep every partial sum within 2**24."""

TEST_SIZE = 360
CALIB_SIZE = 200
NUM_CLASSES = 10

_MIN_CHANNEL_RANGE = 1e-3
"""Smallest per-channel weight range, relative to the whole tensor's (see _quantize_layer)."""

_EPOCHS = 40
_BATCH = 32
_LEARNING_RATE = 3e-3
_WEIGHT_DECAY = 1e-4
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def _frozen(array: np.ndarray) -> np.ndarray:
    """Return ``array`` marked read-only, so cached models and datasets cannot be mutated."""
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Dataset:
    """Disjoint train / calibration / held-out test splits of the digits data (features in [0, 1])."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_calib: np.ndarray
    y_calib: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=8)
def load_dataset(seed: int = 0) -> Dataset:
    """Load digits and split them stratified: 360 test, 200 calibration, the rest for training.

    Calibration is held out from training so that the INT8 scales are fitted on data the FP32
    model has not memorised, as in a real post-training-quantization flow.
    """
    # scikit-learn is imported here, not at module level: it costs ~1 s and only the first
    # dataset load (cached) needs it, not every CLI invocation that touches the simulator.
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)  # pixel intensities are 0..16
    y = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, stratify=y, random_state=seed
    )
    x_train, x_calib, y_train, y_calib = train_test_split(
        x_rest, y_rest, test_size=CALIB_SIZE, stratify=y_rest, random_state=seed
    )
    arrays = (x_train, y_train, x_calib, y_calib, x_test, y_test)
    return Dataset(*(_frozen(np.ascontiguousarray(a)) for a in arrays))


@dataclass(frozen=True, eq=False)
class Fp32Model:
    """A ReLU MLP stored as ``(K, N)`` weight matrices, so a layer is ``x @ w + b``."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return float32 logits for a ``(batch, features)`` input."""
        return _forward_all(self.weights, self.biases, np.asarray(x, dtype=np.float32))[-1]

    def hidden_activations(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """Post-ReLU input of every layer after the first; calibration fits INT8 scales on them."""
        return _forward_all(self.weights, self.biases, np.asarray(x, dtype=np.float32))[1:-1]


def _forward_all(
    weights: tuple[np.ndarray, ...], biases: tuple[np.ndarray, ...], x: np.ndarray
) -> list[np.ndarray]:
    """Return every layer's input followed by the logits (backprop and calibration need them)."""
    outputs = [x]
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = outputs[-1] @ w + b
        outputs.append(z if i == len(weights) - 1 else np.maximum(z, 0.0))
    return outputs


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so exp never overflows."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _gradients(
    weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray, y: np.ndarray
) -> list[np.ndarray]:
    """Cross-entropy gradients for all weights then all biases (same order as the parameter list)."""
    outputs = _forward_all(tuple(weights), tuple(biases), x)
    delta = softmax(outputs[-1])
    delta[np.arange(len(y)), y] -= 1.0
    delta /= len(y)
    grad_w: list[np.ndarray] = []
    grad_b: list[np.ndarray] = []
    for i in reversed(range(len(weights))):
        grad_w.insert(0, outputs[i].T @ delta + _WEIGHT_DECAY * weights[i])
        grad_b.insert(0, delta.sum(axis=0))
        if i:
            delta = (delta @ weights[i].T) * (outputs[i] > 0)
    return grad_w + grad_b


def _adam(params: list[np.ndarray], data: Dataset, rng: np.random.Generator) -> None:
    """Train ``params`` (weights then biases) in place with mini-batch Adam."""
    n_layers = len(params) // 2
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    beta1, beta2 = _ADAM_BETAS
    step = 0
    for _ in range(_EPOCHS):
        order = rng.permutation(len(data.y_train))
        for start in range(0, len(order), _BATCH):
            batch = order[start : start + _BATCH]
            grads = _gradients(params[:n_layers], params[n_layers:], data.x_train[batch], data.y_train[batch])
            step += 1
            correction = np.sqrt(1 - beta2**step) / (1 - beta1**step)
            for p, g, m, v in zip(params, grads, first, second, strict=True):
                m += (1 - beta1) * (g - m)
                v += (1 - beta2) * (g * g - v)
                p -= (_LEARNING_RATE * correction) * m / (np.sqrt(v) + _ADAM_EPS)


@functools.lru_cache(maxsize=8)
def train_fp32(seed: int = 0, hidden: int = 64) -> Fp32Model:
    """Train the 64 -> hidden -> 10 ReLU MLP on the seed's training split; cached per process.

    Cached because every simulated device serves the same model: the fleet trains it once. The
    returned arrays are read-only, so sharing the cached instance is safe.
    """
    data = load_dataset(seed)
    rng = np.random.default_rng(seed)
    sizes = (data.x_train.shape[1], hidden, NUM_CLASSES)
    weights = [
        (rng.standard_normal((k, n)) * np.sqrt(2.0 / k)).astype(np.float32)  # He init for ReLU
        for k, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    biases = [np.zeros(n, dtype=np.float32) for n in sizes[1:]]
    params = weights + biases
    _adam(params, data, rng)
    return Fp32Model(
        weights=tuple(_frozen(w) for w in params[: len(weights)]),
        biases=tuple(_frozen(b) for b in params[len(weights) :]),
    )


def quantize_int8(x: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """Map real values to symmetric int8 (round to nearest, saturate at +/-127)."""
    return np.clip(np.rint(x / scale), -INT8_MAX, INT8_MAX).astype(np.int8)


def requantize(acc: np.ndarray, acc_scale: np.ndarray, out_scale: float) -> np.ndarray:
    """Rescale an int32 accumulator (real = acc * acc_scale) to int8 at the next layer's scale."""
    return quantize_int8(acc * (acc_scale / np.float32(out_scale)), 1.0)


def _check_depth(k: int) -> None:
    """Refuse reduction depths where float32 accumulation could round, i.e. stop being exact."""
    if k > MAX_EXACT_K:
        raise ValueError(
            f"reduction depth K={k} exceeds {MAX_EXACT_K}: K * 127**2 would pass 2**24 and the "
            "float32 accumulation of the INT8 matmul would no longer be exact"
        )


def exact_f32_matmul(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Multiply int8-valued float32 arrays with BLAS; the float result is an exact integer.

    Callers that hold pre-cast constant weights use this directly and must keep K <= 1040.
    """
    return (a @ w).astype(np.int32)


def int8_matmul(a_q: np.ndarray, w_q: np.ndarray) -> np.ndarray:
    """INT8 x INT8 -> INT32 matmul via float32 BLAS, bit-identical to integer arithmetic.

    Raises ValueError when K > 1040 (exactness bound), and for 1024 < K <= 1040 when an operand
    holds -128, since only the symmetric range keeps K * |a| * |w| within 2**24 there.
    """
    if a_q.dtype != np.int8 or w_q.dtype != np.int8:
        raise TypeError(f"int8 operands required, got {a_q.dtype} and {w_q.dtype}")
    if a_q.ndim != 2 or w_q.ndim != 2 or a_q.shape[1] != w_q.shape[0]:
        raise ValueError(f"incompatible matmul shapes {a_q.shape} @ {w_q.shape}")
    k = a_q.shape[1]
    _check_depth(k)
    if k > _ANY_INT8_EXACT_K and (a_q.min() == -128 or w_q.min() == -128):
        raise ValueError(f"K={k} > {_ANY_INT8_EXACT_K} is only exact for symmetric int8 in [-127, 127]")
    return exact_f32_matmul(a_q.astype(np.float32), w_q.astype(np.float32))


def int8_matmul_reference(a_q: np.ndarray, w_q: np.ndarray) -> np.ndarray:
    """Plain int32 matmul, the ground truth the fast path is checked against."""
    return a_q.astype(np.int32) @ w_q.astype(np.int32)


@dataclass(frozen=True, eq=False)
class QuantLayer:
    """One INT8 layer: ``acc = x_q @ w_q + b_q`` in int32, real value ``acc * acc_scale``."""

    w_q: np.ndarray
    """int8 weights, shape (K, N)."""
    w_scale: np.ndarray
    """float32 per-output-channel weight scales, shape (N,)."""
    b_q: np.ndarray
    """int32 bias in accumulator units, compiled once from the calibrated scales."""
    in_scale: float
    """Per-tensor scale of this layer's int8 input."""
    w_f32: np.ndarray = field(init=False, repr=False)
    """int8-valued float32 copy of ``w_q``: weights are constant, so cast them once, not per call."""

    def __post_init__(self) -> None:
        _check_depth(self.w_q.shape[0])
        object.__setattr__(self, "w_f32", _frozen(self.w_q.astype(np.float32)))

    @property
    def acc_scale(self) -> np.ndarray:
        """Per-channel real value of one accumulator unit."""
        return (np.float32(self.in_scale) * self.w_scale).astype(np.float32)


def _quantize_layer(w: np.ndarray, b: np.ndarray, in_scale: float) -> QuantLayer:
    """Quantize one FP32 layer with per-output-channel symmetric weight scales.

    A channel's range is floored at a fraction of the tensor's: dead ReLU units end up with
    weights near 1e-28, and a scale that small would blow their bias past the int32 range.
    """
    max_abs = np.abs(w).max(axis=0)
    max_abs = np.maximum(max_abs, _MIN_CHANNEL_RANGE * max_abs.max())
    w_scale = (max_abs / INT8_MAX).astype(np.float32)
    b_q = np.rint(b / (np.float32(in_scale) * w_scale)).astype(np.int32)
    return QuantLayer(
        w_q=_frozen(quantize_int8(w, w_scale)), w_scale=_frozen(w_scale), b_q=_frozen(b_q), in_scale=in_scale
    )


def _activation_scale(values: np.ndarray) -> float:
    """Per-tensor max-abs scale: the digits activations have no outliers worth clipping."""
    return max(float(np.abs(values).max()), 1e-8) / INT8_MAX


@dataclass(frozen=True, eq=False)
class QuantizedModel:
    """Post-training INT8 version of an :class:`Fp32Model`, run with integer kernels."""

    layers: tuple[QuantLayer, ...]

    @classmethod
    def from_fp32(cls, model: Fp32Model, calib_x: np.ndarray) -> QuantizedModel:
        """Quantize ``model``, fitting activation scales on the calibration inputs ``calib_x``."""
        calib_x = np.asarray(calib_x, dtype=np.float32)
        inputs = (calib_x, *model.hidden_activations(calib_x))
        return cls(
            tuple(
                _quantize_layer(w, b, _activation_scale(a))
                for w, b, a in zip(model.weights, model.biases, inputs, strict=True)
            )
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Quantize the input, run int8 matmuls with int32 accumulation, return float32 logits."""
        x_q = quantize_int8(np.asarray(x, dtype=np.float32), self.layers[0].in_scale)
        for layer, following in zip(self.layers, self.layers[1:], strict=False):
            acc = np.maximum(exact_f32_matmul(x_q.astype(np.float32), layer.w_f32) + layer.b_q, 0)
            x_q = requantize(acc, layer.acc_scale, following.in_scale)
        last = self.layers[-1]
        acc = exact_f32_matmul(x_q.astype(np.float32), last.w_f32) + last.b_q
        return (acc * last.acc_scale).astype(np.float32)

    def with_corrupted_scales(self, factor: float, rng: np.random.Generator) -> QuantizedModel:
        """Return a copy whose scale metadata is wrong, as after a bad calibration (fault F3).

        The compiled integers (int8 weights, int32 biases) are kept, every activation scale is
        multiplied by ``factor``, and the weight-channel scales of each layer are multiplied by
        ``factor`` for a random half of the channels and divided by it for the other half
        (``rng`` picks which). Inputs saturate or lose resolution, biases no longer match their
        accumulators and hidden features are mis-weighted by up to ``factor**2``, so accuracy
        drops as on a device with a broken calibration table. ``self`` is not modified.
        """
        if factor <= 0:
            raise ValueError(f"scale factor must be positive, got {factor}")
        return QuantizedModel(tuple(_miscalibrated(layer, factor, rng) for layer in self.layers))


def _miscalibrated(layer: QuantLayer, factor: float, rng: np.random.Generator) -> QuantLayer:
    """Copy of ``layer`` with its activation scale times ``factor``, channel scales off by it.

    Exactly half the channels go each way: with independent random directions an unlucky draw
    can leave most channels consistent with each other and the fault nearly invisible.
    """
    directions = rng.permutation(np.resize(np.array([-1.0, 1.0]), layer.w_scale.shape))
    w_scale = (layer.w_scale * factor**directions).astype(np.float32)
    return dataclasses.replace(layer, in_scale=layer.in_scale * factor, w_scale=_frozen(w_scale))


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Fraction of rows whose highest logit is the true label."""
    if len(logits) != len(y):
        raise ValueError(f"{len(logits)} logits rows for {len(y)} labels")
    return float(np.mean(np.argmax(logits, axis=1) == y))

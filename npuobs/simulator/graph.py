"""The compiled op graph of the quantized MLP, and where each op runs on a simulated device.

Why a graph: an NPU only accelerates the ops its compiler supports; anything else falls back to
the host CPU, and those fallbacks are what the fleet's CPU-fallback counters report. Here each op
really executes: supported ops run the integer kernels, unsupported ones run in FP32 numpy on the
dequantized tensor and re-quantize their result into the domain the next op expects, just as a
host fallback does. Op records carry deterministic work estimates (MACs, elements) per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from npuobs.simulator.model import QuantizedModel, exact_f32_matmul, quantize_int8, requantize, softmax

OP_KINDS = ("quantize", "matmul_int8", "bias_add", "relu", "gelu", "requantize", "dequantize", "softmax")
"""Every op kind a graph may contain."""

HEALTHY_OPS = frozenset(OP_KINDS) - {"gelu"}

DEVICE_OP_SETS: dict[str, frozenset[str]] = {
    "RNGD": HEALTHY_OPS,  # Furiosa
    "ATOM": HEALTHY_OPS,  # Rebellions
    "Inferentia2": HEALTHY_OPS,  # AWS
    "Gaudi2": HEALTHY_OPS,  # Intel
}
"""Ops each simulated device model runs natively: the whole healthy graph, never ``gelu`` (fault F5)."""

CORRUPT_FRACTION = 0.02
"""Share of predictions a firmware bug flips (fault F8); at least one per corrupted batch."""

Placement = Literal["device", "host"]


@dataclass(frozen=True)
class Op:
    """One node of the graph: ``layer`` is the MLP layer it belongs to, widths give its shape."""

    kind: str
    layer: int
    in_features: int
    out_features: int

    def macs(self, batch: int) -> int:
        """Multiply-accumulates for ``batch`` rows: only matmuls do any."""
        return batch * self.in_features * self.out_features if self.kind == "matmul_int8" else 0

    def elements(self, batch: int) -> int:
        """Tensor elements read plus written for ``batch`` rows (weights and bias included)."""
        if self.kind == "matmul_int8":
            return batch * self.in_features + self.in_features * self.out_features + batch * self.out_features
        if self.kind == "bias_add":
            return 2 * batch * self.out_features + self.out_features
        return batch * self.in_features + batch * self.out_features


@dataclass(frozen=True)
class OpGraph:
    """An ordered, straight-line list of ops, as a compiler emits for an MLP."""

    name: str
    ops: tuple[Op, ...]

    @property
    def kinds(self) -> frozenset[str]:
        """The distinct op kinds, to compare against a device's supported set."""
        return frozenset(op.kind for op in self.ops)


def build_graph(model: QuantizedModel, activation: Literal["relu", "gelu"] = "relu") -> OpGraph:
    """Lower ``model`` to ops; ``activation="gelu"`` is the mis-compiled variant of fault F5."""
    if activation not in ("relu", "gelu"):
        raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
    in_features = model.layers[0].w_q.shape[0]
    ops = [Op("quantize", 0, in_features, in_features)]
    for i, layer in enumerate(model.layers):
        k, n = layer.w_q.shape
        ops += [Op("matmul_int8", i, k, n), Op("bias_add", i, n, n)]
        if i < len(model.layers) - 1:
            ops += [Op(activation, i, n, n), Op("requantize", i, n, n)]
    classes = model.layers[-1].w_q.shape[1]
    ops += [
        Op("dequantize", len(model.layers) - 1, classes, classes),
        Op("softmax", len(model.layers) - 1, classes, classes),
    ]
    return OpGraph(name=f"mlp-int8-{activation}", ops=tuple(ops))


@dataclass(frozen=True)
class OpRecord:
    """Where one op ran and how much work it did, for the fallback and utilisation metrics."""

    op: str
    placement: Placement
    macs: int
    elements: int


@dataclass(frozen=True, eq=False)
class Execution:
    """Result of one graph run: real outputs plus the per-op placement trace."""

    logits: np.ndarray
    probabilities: np.ndarray
    predictions: np.ndarray
    records: tuple[OpRecord, ...]

    @property
    def host_ops(self) -> int:
        """How many ops fell back to the host CPU."""
        return sum(r.placement == "host" for r in self.records)


@dataclass(frozen=True, eq=False)
class _Tensor:
    """A value between ops: ``scale is None`` means real float32, else ``real = values * scale``."""

    values: np.ndarray
    scale: np.ndarray | float | None

    def real(self) -> np.ndarray:
        """Dequantized float32 view, what a host fallback computes on."""
        if self.scale is None:
            return self.values
        return (self.values * self.scale).astype(np.float32)


def _output_scale(op: Op, model: QuantizedModel) -> np.ndarray | float | None:
    """Scale of the op's output as the device kernels produce it (None: real float32)."""
    if op.kind == "quantize":
        return model.layers[0].in_scale
    if op.kind == "requantize":
        return model.layers[op.layer + 1].in_scale
    if op.kind in ("dequantize", "softmax"):
        return None
    return model.layers[op.layer].acc_scale  # int32 accumulator domain


def _device_kernel(op: Op, model: QuantizedModel, t: _Tensor) -> np.ndarray:
    """Integer NPU kernel: returns the output values in the scale given by ``_output_scale``."""
    layer = model.layers[op.layer]
    if op.kind == "quantize":
        return quantize_int8(t.values, layer.in_scale)
    if op.kind == "matmul_int8":
        return exact_f32_matmul(t.values.astype(np.float32), layer.w_f32)
    if op.kind == "bias_add":
        return t.values + layer.b_q
    if op.kind == "relu":
        return np.maximum(t.values, 0)
    if op.kind == "requantize":
        return requantize(t.values, layer.acc_scale, model.layers[op.layer + 1].in_scale)
    if op.kind == "dequantize":
        return t.real()
    if op.kind == "softmax":
        return softmax(t.values)
    raise ValueError(f"op {op.kind!r} has no device kernel")


def _gelu(x: np.ndarray) -> np.ndarray:
    """GELU, tanh form (as in BERT/GPT-2), in float32."""
    inner = np.float32(np.sqrt(2.0 / np.pi)) * (x + np.float32(0.044715) * x**3)
    return (np.float32(0.5) * x * (1 + np.tanh(inner))).astype(np.float32)


def _host_kernel(op: Op, model: QuantizedModel, x: np.ndarray) -> np.ndarray:
    """FP32 reference of the op on real values, as the host CPU runs a fallback."""
    layer = model.layers[op.layer]
    if op.kind == "matmul_int8":
        return x @ (layer.w_f32 * layer.w_scale)
    if op.kind == "bias_add":
        return x + layer.b_q * layer.acc_scale
    if op.kind == "relu":
        return np.maximum(x, np.float32(0))
    if op.kind == "gelu":
        return _gelu(x)
    if op.kind == "softmax":
        return softmax(x)
    return x  # quantize / requantize / dequantize are identities on real values


def _encode(real: np.ndarray, scale: np.ndarray | float | None, like: Op) -> np.ndarray:
    """Re-quantize a host result into the domain the device would have produced for ``like``."""
    if scale is None:
        return real.astype(np.float32)
    if like.kind in ("quantize", "requantize"):
        return quantize_int8(real, scale)
    return np.rint(real / scale).astype(np.int32)


def _run_op(op: Op, model: QuantizedModel, t: _Tensor, placement: Placement) -> _Tensor:
    """Execute one op where it was placed and return its output tensor."""
    scale = _output_scale(op, model)
    if placement == "device":
        return _Tensor(_device_kernel(op, model, t), scale)
    return _Tensor(_encode(_host_kernel(op, model, t.real()), scale, op), scale)


def _check_shapes(graph: OpGraph, model: QuantizedModel, x: np.ndarray) -> None:
    """Refuse a graph lowered from a different model, whose work records would be wrong."""
    for op in graph.ops:
        if op.kind == "matmul_int8" and model.layers[op.layer].w_q.shape != (op.in_features, op.out_features):
            raise ValueError(f"graph {graph.name!r} does not match the model at layer {op.layer}")
    if x.ndim != 2 or x.shape[1] != graph.ops[0].in_features:
        raise ValueError(f"input shape {x.shape} does not match graph input width {graph.ops[0].in_features}")


def _corrupt(
    logits: np.ndarray, probabilities: np.ndarray, predictions: np.ndarray, rng: np.random.Generator
) -> None:
    """Flip a few predictions to another class in place, swapping scores so outputs stay consistent."""
    n = len(predictions)
    rows = rng.choice(n, size=min(n, max(1, round(CORRUPT_FRACTION * n))), replace=False)
    wrong = (predictions[rows] + rng.integers(1, logits.shape[1], size=len(rows))) % logits.shape[1]
    for scores in (logits, probabilities):
        right_scores = scores[rows, predictions[rows]].copy()
        scores[rows, predictions[rows]] = scores[rows, wrong]
        scores[rows, wrong] = right_scores
    predictions[rows] = wrong


def execute(
    graph: OpGraph,
    model: QuantizedModel,
    x: np.ndarray,
    supported: frozenset[str],
    *,
    corrupt_output_rng: np.random.Generator | None = None,
) -> Execution:
    """Run ``graph`` on real inputs, each op on the device if ``supported`` has it, else on host.

    ``corrupt_output_rng`` models a firmware bug (fault F8): a few predictions are flipped to a
    wrong class, deterministically for a given generator state.
    """
    x = np.asarray(x, dtype=np.float32)
    _check_shapes(graph, model, x)
    t = _Tensor(x, None)
    records = []
    logits = x
    for op in graph.ops:
        placement: Placement = "device" if op.kind in supported else "host"
        t = _run_op(op, model, t, placement)
        records.append(OpRecord(op.kind, placement, op.macs(len(x)), op.elements(len(x))))
        if op.kind == "dequantize":
            logits = t.values
    probabilities = t.values
    predictions = np.argmax(probabilities, axis=1)
    if corrupt_output_rng is not None:
        logits, probabilities = logits.copy(), probabilities.copy()
        _corrupt(logits, probabilities, predictions, corrupt_output_rng)
    return Execution(logits, probabilities, predictions, tuple(records))


def golden_check(
    graph: OpGraph,
    model: QuantizedModel,
    supported: frozenset[str],
    x_canary: np.ndarray,
    expected_predictions: np.ndarray,
    *,
    corrupt_output_rng: np.random.Generator | None = None,
) -> int:
    """Run the golden canary batch and count predictions that differ from the expected ones.

    Each mismatch is one incorrect-output event; ``corrupt_output_rng`` passes fault F8 through.
    """
    run = execute(graph, model, x_canary, supported, corrupt_output_rng=corrupt_output_rng)
    return int(np.count_nonzero(run.predictions != np.asarray(expected_predictions)))

"""Span trees built after the fact, and the local tail rule that decides which ones to keep.

Whether a request's trace is worth exporting is known only when it ends: slow or failed requests
are the ones worth reading. So a request's phases are timed as plain numbers while it runs and its
span tree is written with explicit start/end times once it is kept. That costs nothing for the
requests that are dropped, lets a virtual-time simulator write the same trees from its own clock,
and keeps the spans' timing exactly the timing that was measured.

The tail rule is applied locally, per process: keep a tree when the request was slower than the
latency SLO or failed, keep a head-sampled share of the rest, and never more than a budget per
second (an error storm must not turn into a trace storm).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Status, StatusCode, Tracer

# Span names (low cardinality: the op's name is an attribute, not part of the span name).
INFERENCE = "inference"
MODEL_LOAD = "model.load"
QUEUE_WAIT = "queue_wait"
PREPROCESS = "preprocess"
DEVICE_EXECUTE = "device_execute"
HOST_FALLBACK_OP = "host_fallback_op"
POSTPROCESS = "postprocess"

# Attribute keys. OpenTelemetry has no NPU conventions; these follow its naming rules.
A_NODE = "npu.node"
A_DEVICE = "npu.device.id"
A_VENDOR = "npu.device.vendor"
A_MODEL = "npu.model"
A_TENANT = "npu.tenant"
A_BATCH = "npu.batch_size"
A_PRECISION = "npu.precision"
A_OUTCOME = "npu.outcome"
A_FALLBACK_OPS = "npu.fallback_ops"
A_COLD_START = "npu.cold_start"
A_OP = "npu.op"
A_OPS = "npu.ops"
A_CLOCK = "npu.clock_hertz"
A_CLOCK_MAX = "npu.clock_max_hertz"
A_THROTTLED = "npu.throttled"

_NO_ATTRS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Phase:
    """One child span: a named interval (unix ns) with attributes and, if it failed, why."""

    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] = field(default_factory=lambda: _NO_ATTRS)
    error: str | None = None


@dataclass(slots=True)
class SpanTree:
    """A root span (an inference or a model load) and its phases, ready to be written."""

    name: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    phases: Sequence[Phase] = ()
    error: str | None = None
    parent: Context | None = None  # the caller's context (an incoming request's span)


def write(tracer: Tracer, tree: SpanTree) -> str | None:
    """Write ``tree`` as spans with its own times; the trace id (32 hex digits) if it was recorded.

    None when the tracer provider's own sampler dropped it (configure it to sample everything and
    let ``TracePolicy`` decide), so no exemplar ever points at a trace that was not exported.
    """
    root = tracer.start_span(tree.name, context=tree.parent, attributes=tree.attributes, start_time=tree.start_ns)
    if not root.is_recording():
        return None
    if tree.error:
        root.set_status(Status(StatusCode.ERROR, tree.error))
    ctx = trace.set_span_in_context(root)
    for p in tree.phases:
        child = tracer.start_span(p.name, context=ctx, attributes=p.attributes, start_time=p.start_ns)
        if p.error:
            child.set_status(Status(StatusCode.ERROR, p.error))
        child.end(end_time=p.end_ns)
    root.end(end_time=tree.end_ns)
    return format(root.get_span_context().trace_id, "032x")


class TracePolicy:
    """Which finished requests get a span tree: slow (> SLO) or failed ones always, a head-sampled
    ``head_ratio`` of the others (and those whose caller's trace is sampled), at most
    ``max_per_second`` trees per second of the caller's clock (wall or virtual)."""

    def __init__(self, slo_seconds: float, head_ratio: float, max_per_second: float, seed: int | None = None) -> None:
        if not 0.0 <= head_ratio <= 1.0:
            raise ValueError(f"head sample ratio must be in 0..1, got {head_ratio}")
        if max_per_second < 0:
            raise ValueError("the per-second trace budget cannot be negative")
        self.slo_seconds = slo_seconds
        self.head_ratio = head_ratio
        self.max_per_second = max_per_second
        self._random = random.Random(seed).random
        self._np_rng = np.random.default_rng(seed)
        self._window = -float("inf")
        self._kept = 0

    def _budget(self, now: float) -> float:
        if now - self._window >= 1.0:
            self._window, self._kept = now, 0
        return self.max_per_second - self._kept

    def wants(self, seconds: float, failed: bool) -> bool:
        """The tail rule and head sampling for one finished request (before the budget)."""
        return failed or seconds > self.slo_seconds or self._random() < self.head_ratio

    def admit(self, now: float) -> bool:
        """Take one trace from the budget of the second around ``now`` (any monotonic clock)."""
        if self._budget(now) < 1:
            return False
        self._kept += 1
        return True

    def select(self, seconds: np.ndarray, failed: np.ndarray, now: float) -> np.ndarray:
        """Indices of the requests to keep among many that ended around ``now`` (one simulator tick).

        The tail rule first, failed requests before slow ones and the slowest first, so a capped
        budget goes to the most telling traces; then head-sampled ones while budget remains.
        """
        budget = int(self._budget(now))
        if budget <= 0 or seconds.size == 0:
            return np.empty(0, dtype=np.int64)
        tail = failed | (seconds > self.slo_seconds)
        head = ~tail & (self._np_rng.random(seconds.size) < self.head_ratio)
        must = np.flatnonzero(tail)
        if must.size > budget:
            priority = np.where(failed[must], np.inf, seconds[must])
            must = must[np.argsort(-priority, kind="stable")[:budget]]
        chosen = np.concatenate([must, np.flatnonzero(head)[: budget - must.size]])
        self._kept += int(chosen.size)
        return chosen

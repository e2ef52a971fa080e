"""The one code path for runtime metrics: explicit values in, validated, out to a sink.

Everything that records a runtime metric goes through a ``Recorder``: the context managers of
``Instrumentation`` (wall clock, one request at a time), the ONNX Runtime adapter (profiled ops)
and the simulator (virtual time, whole ticks of requests as arrays). The recorder takes durations
and counts, never clocks, which is what lets a virtual-time simulator and a real server share it;
the sink decides where the recorded series go (a Prometheus scrape or the simulator's state document).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from npuobs.instrumentation.sinks import Exemplar, Identity, MemoryStore, Sink
from npuobs.schema import OP_PLACEMENTS, REQUEST_OUTCOMES

_OUTCOMES = frozenset(REQUEST_OUTCOMES)
_PLACEMENTS = frozenset(OP_PLACEMENTS)


def _check_outcome(outcome: str) -> None:
    if outcome not in _OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(REQUEST_OUTCOMES)} (npuobs.schema)")


def _check_op(op: str, placement: str, count: int, seconds: float) -> None:
    if placement not in _PLACEMENTS:
        raise ValueError(f"placement {placement!r} of op {op!r} is not one of {', '.join(OP_PLACEMENTS)}")
    if count < 0 or seconds < 0:
        raise ValueError(f"op counts and times only grow (op {op!r}: count={count}, seconds={seconds})")


class Recorder:
    """Records the schema's runtime metrics of one device identity into a sink.

    Labels are bounded by construction: outcomes and placements must come from the schema's closed
    enumerations (a typo raises instead of creating a series nobody alerts on).
    """

    def __init__(self, sink: Sink, identity: Identity) -> None:
        self._out: MemoryStore = sink.series(identity)

    def record_request(self, tenant: str, seconds: float, outcome: str = "success", exemplar: Exemplar | None = None,
                       ops: Sequence[tuple[str, str, int, float]] = (), cold_start: bool = False) -> None:
        """Everything about one finished request at once (the per-request path of a live server):
        latency and outcome, the kept trace if any, the ops it ran as (op, placement, count,
        seconds), and whether it waited for a model load."""
        if outcome not in _OUTCOMES:
            _check_outcome(outcome)
        for op in ops:
            if op[1] not in _PLACEMENTS or op[2] < 0 or op[3] < 0:
                _check_op(*op)
        self._out.observe(tenant, seconds, outcome, exemplar, ops, cold_start)

    def record_latencies(self, tenant: str, seconds: np.ndarray, outcome: str = "success",
                         exemplars: Mapping[int, str] | None = None, timestamp: float = 0.0) -> None:
        """Many finished requests of one tenant and outcome (a batch, or a simulator tick).

        ``exemplars`` maps indices into ``seconds`` to the trace ids of kept traces; ``timestamp``
        (unix seconds) is when those requests ended, for the exemplars' age.
        """
        _check_outcome(outcome)
        seconds = np.asarray(seconds, dtype=np.float64)
        if not exemplars:
            self._out.observe_many(tenant, seconds, outcome, [])
            return
        rest = np.ones(seconds.size, dtype=bool)
        rest[list(exemplars)] = False
        kept = [Exemplar(trace_id, float(seconds[i]), timestamp) for i, trace_id in exemplars.items()]
        self._out.observe_many(tenant, seconds[rest], outcome, kept)

    def record_ops(self, op: str, placement: str, count: int, seconds: float) -> None:
        """``count`` ops of kind ``op`` ran at ``placement`` ("device" or "host") in ``seconds`` total."""
        _check_op(op, placement, count, seconds)
        self._out.add_ops(op, placement, count, seconds)

    def set_queue_length(self, tenant: str, length: int) -> None:
        """Requests of ``tenant`` waiting now (for runtimes that know their queue's length)."""
        self._out.set_queue_length(tenant, length)

    def queue_entered(self, tenant: str) -> None:
        """A request of ``tenant`` started waiting (for runtimes that only see requests pass)."""
        self._out.add_queue_length(tenant, 1)

    def queue_left(self, tenant: str) -> None:
        """A request of ``tenant`` stopped waiting."""
        self._out.add_queue_length(tenant, -1)

    def record_model_load(self, seconds: float) -> None:
        """A model load finished and took ``seconds``."""
        self._out.set_model_load(seconds)

    def record_cold_starts(self, tenant: str, count: int) -> None:
        """``count`` requests of ``tenant`` had to wait for a model load (a simulator tick's worth)."""
        if count:
            self._out.add_cold_starts(tenant, count)

    def record_canary(self, tenant: str, checks: int, mismatches: int, accuracy_delta: float | None = None) -> None:
        """Golden-output canary results: ``checks`` outputs compared, ``mismatches`` differed; the
        accuracy lost against the FP32 reference (0-1) when the canary set has labels."""
        if not 0 <= mismatches <= checks:
            raise ValueError(f"mismatches ({mismatches}) must be between 0 and checks ({checks})")
        if accuracy_delta is not None and not 0.0 <= accuracy_delta <= 1.0:
            raise ValueError(f"accuracy delta is a ratio in 0..1, got {accuracy_delta}")
        self._out.add_canary(tenant, checks, mismatches, accuracy_delta)

"""``Instrumentation``: what an inference server imports to emit npuobs runtime metrics and traces.

    instr = Instrumentation(registry=registry, tracer_provider=provider, node="n1", device="0", model="resnet")
    with instr.model_load():
        session = load()
    with instr.inference(tenant="search", batch_size=8, precision="int8") as h:
        with h.queue_wait():
            batch = queue.get()
        with h.device_execute(ops=40):
            out = session.run(batch)

The per-request cost is kept small by doing little while a request runs: phases only read a
monotonic clock, the metrics are recorded once at the end, and a span tree is written only for
requests the ``TracePolicy`` keeps (see ``tracing.py``). With tracing off, phases that record no
metric are shared no-op context managers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from contextlib import ContextDecorator, nullcontext
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import TracerProvider
from prometheus_client import CollectorRegistry

from npuobs.instrumentation import tracing as T
from npuobs.instrumentation.recorder import Recorder
from npuobs.instrumentation.sinks import Exemplar, Identity, PrometheusSink, Sink
from npuobs.instrumentation.tracing import Phase, SpanTree, TracePolicy
from npuobs.thresholds import DEFAULT

__version__ = "0.1.0"
_NULL = nullcontext()


class Instrumentation:
    """Runtime metrics (and, with a tracer provider, traces) of one served model on one device.

    ``registry`` selects prometheus_client metrics in that registry (the default registry when
    neither it nor ``sink`` is given); ``sink`` any other storage, such as the simulator's
    ``MemoryStore``. ``tracer_provider`` turns tracing on; give it a sampler that samples
    everything (the SDK default does) and let ``head_sample_ratio``, the latency SLO and
    ``max_traces_per_second`` decide, because spans are written only after that decision.
    ``seed`` makes head sampling reproducible (the simulator's runs are).
    """

    def __init__(self, *, registry: CollectorRegistry | None = None, sink: Sink | None = None,
                 tracer_provider: TracerProvider | None = None, node: str = "", device: str = "",
                 vendor: str = "", model: str = "", slo_latency_seconds: float = DEFAULT.latency_slo_seconds,
                 head_sample_ratio: float = 0.01, max_traces_per_second: float = 10.0,
                 seed: int | None = None) -> None:
        if registry is not None and sink is not None:
            raise ValueError("give a registry (prometheus_client metrics) or a sink, not both")
        self.identity = Identity(node, device, vendor, model)
        self.recorder = Recorder(sink or PrometheusSink.for_registry(registry), self.identity)
        self.policy = TracePolicy(slo_latency_seconds, head_sample_ratio, max_traces_per_second, seed)
        self.tracer_provider = tracer_provider
        self._tracer = tracer_provider.get_tracer("npuobs.instrumentation", __version__) if tracer_provider else None
        self._base_attrs = {T.A_NODE: node, T.A_DEVICE: device, T.A_VENDOR: vendor, T.A_MODEL: model}
        self._load_lock = threading.Lock()
        self._loading = 0  # model loads in progress
        self._loads = 0  # model loads started so far

    @property
    def tracing(self) -> bool:
        """Whether span trees are written (a tracer provider was given)."""
        return self._tracer is not None

    def attributes(self, **extra: Any) -> dict[str, Any]:
        """Root-span attributes: this runtime's identity plus ``extra`` (keys are attribute names)."""
        return {**self._base_attrs, **extra}

    def write_trace(self, tree: SpanTree) -> str | None:
        """Write a kept span tree with its own times; its trace id, or None when tracing is off or the
        provider's sampler dropped it. The simulator calls this with trees built in virtual time."""
        return T.write(self._tracer, tree) if self._tracer is not None else None

    # -- context managers --------------------------------------------------------------------------
    def model_load(self) -> ModelLoad:
        """Time a model load (context manager or decorator): sets ``npu_model_load_seconds``; requests
        that overlap it count as cold starts; with tracing on, a ``model.load`` span is always kept."""
        return ModelLoad(self)

    def inference(self, *, tenant: str, batch_size: int = 1, precision: str = "") -> InferenceHandle:
        """One request (or batch) end to end: latency, outcome, cold start, ops, and its span tree if kept."""
        return InferenceHandle(self, tenant, batch_size, precision)

    def canary(self, *, checks: int, mismatches: int, accuracy_delta: float | None = None,
               tenant: str = DEFAULT.canary_tenant) -> None:
        """Results of a golden-output canary run (see ``Recorder.record_canary``)."""
        self.recorder.record_canary(tenant, checks, mismatches, accuracy_delta)

    # -- model-load bookkeeping shared with the handles --------------------------------------------
    def _load_started(self) -> None:
        with self._load_lock:
            self._loading += 1
            self._loads += 1

    def _load_finished(self) -> None:
        with self._load_lock:
            self._loading -= 1


class ModelLoad(ContextDecorator):
    """A timed model load; as a decorator, each call of the decorated function is one load."""

    def __init__(self, instr: Instrumentation) -> None:
        self._instr = instr

    def _recreate_cm(self) -> ModelLoad:
        return ModelLoad(self._instr)  # each decorated call times its own load

    def __enter__(self) -> ModelLoad:
        self._instr._load_started()
        self._wall0 = time.time_ns()
        self._t0 = time.perf_counter_ns()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        elapsed = time.perf_counter_ns() - self._t0
        instr = self._instr
        instr._load_finished()
        if exc_type is None:
            instr.recorder.record_model_load(elapsed / 1e9)
        instr.write_trace(SpanTree(T.MODEL_LOAD, self._wall0, self._wall0 + elapsed, instr.attributes(),
                                   error=exc_type.__name__ if exc_type else None,
                                   parent=otel_context.get_current()))


class InferenceHandle:
    """The request being instrumented; its phases are context managers on it.

    The outcome is "success", or "error" when an exception leaves the ``with`` block, unless
    ``set_outcome`` said otherwise (e.g. "oom", "rejected"). After the block, ``seconds`` is the
    measured latency and ``trace_id`` the kept trace's id (None when not kept).
    """

    __slots__ = ("_instr", "tenant", "batch_size", "precision", "_outcome", "_t0", "_wall0", "_loads", "_cold",
                 "_phases", "_fallbacks", "_ops", "_parent", "trace_id", "seconds")

    def __init__(self, instr: Instrumentation, tenant: str, batch_size: int, precision: str) -> None:
        self._instr = instr
        self.tenant = tenant
        self.batch_size = batch_size
        self.precision = precision
        self._outcome: str | None = None
        self._phases: list[tuple] | None = None  # (name, start, end, attributes, error), perf-counter ns
        self._fallbacks: list[str] = []
        self._ops: list[tuple[str, str, int, float]] = []
        self.trace_id: str | None = None
        self.seconds = 0.0

    def set_outcome(self, outcome: str) -> None:
        """Override the outcome: one of npuobs.schema.REQUEST_OUTCOMES."""
        self._outcome = outcome

    def __enter__(self) -> InferenceHandle:
        instr = self._instr
        self._loads, self._cold = instr._loads, instr._loading > 0
        if instr._tracer is not None:
            self._phases = []
            self._parent = otel_context.get_current()
            self._wall0 = time.time_ns()
        self._t0 = time.perf_counter_ns()
        return self

    # -- phases ------------------------------------------------------------------------------------
    def queue_wait(self) -> _Phase:
        """Waiting for a batch slot or a worker; also counted in ``npu_inference_queue_length``."""
        return _Phase(self, T.QUEUE_WAIT)

    def preprocess(self) -> _Phase | nullcontext:
        return _Phase(self, T.PREPROCESS) if self._phases is not None else _NULL

    def postprocess(self) -> _Phase | nullcontext:
        return _Phase(self, T.POSTPROCESS) if self._phases is not None else _NULL

    def device_execute(self, *, ops: int | None, attributes: Mapping[str, Any] | None = None) -> _Phase:
        """A device partition of ``ops`` graph ops: counted in ``npu_ops_total{placement="device"}``
        with its time under ``npu_op_seconds_total{op="device_execute"}`` (a serving stack rarely
        sees per-op device time). ``ops=None`` when the ops are accounted per kind with
        ``record_ops`` instead (as the ONNX Runtime adapter does). ``attributes`` go on its span,
        e.g. ``{"npu.clock_hertz": ...}`` read from the device, so a throttled clock shows on the
        slow request's trace."""
        return _Phase(self, T.DEVICE_EXECUTE, "", ops, attributes)

    def record_ops(self, op: str, placement: str, count: int, seconds: float) -> None:
        """Ops of one kind this request ran, when the server knows them per kind (e.g. from a
        profiler); host ones are named on the root span like ``host_fallback_op``."""
        self._ops.append((op, placement, count, seconds))
        if placement == "host":
            self._fallbacks.append(op)

    def host_fallback_op(self, op: str) -> _Phase:
        """An op the device cannot run, executed on the host (CPU fallback): counted and timed under
        ``npu_ops_total{placement="host"}`` / ``npu_op_seconds_total{op=op}``, named on the root span."""
        self._fallbacks.append(op)
        return _Phase(self, T.HOST_FALLBACK_OP, op)

    # -- end of the request ------------------------------------------------------------------------
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        elapsed = time.perf_counter_ns() - self._t0
        instr = self._instr
        self.seconds = seconds = elapsed / 1e9
        outcome = self._outcome or ("error" if exc_type is not None else "success")
        cold = self._cold or instr._loads != self._loads
        exemplar = None
        if self._phases is not None and (instr.policy.wants(seconds, outcome != "success") or self._parent_sampled()) \
                and instr.policy.admit(time.monotonic()):
            exemplar = self._write(seconds, outcome, cold, exc_type, elapsed)
        instr.recorder.record_request(self.tenant, seconds, outcome, exemplar, self._ops, cold)

    def _parent_sampled(self) -> bool:
        """Whether the caller's trace (an incoming request's span) was sampled upstream: then this
        request's tree belongs in it whatever its latency."""
        ctx = trace.get_current_span(self._parent).get_span_context()
        return ctx.is_valid and ctx.trace_flags.sampled

    def _write(self, seconds: float, outcome: str, cold: bool, exc_type: type[BaseException] | None,
               elapsed: int) -> Exemplar | None:
        instr = self._instr
        attrs = instr.attributes(**{T.A_TENANT: self.tenant, T.A_BATCH: self.batch_size, T.A_OUTCOME: outcome})
        if self.precision:
            attrs[T.A_PRECISION] = self.precision
        if self._fallbacks:
            attrs[T.A_FALLBACK_OPS] = tuple(self._fallbacks)
        if cold:
            attrs[T.A_COLD_START] = True
        base = self._wall0 - self._t0  # perf-counter ns -> unix ns
        phases = [Phase(name, base + start, base + end, attributes or {}, error)
                  for name, start, end, attributes, error in self._phases]
        error = exc_type.__name__ if exc_type is not None else (outcome if outcome != "success" else None)
        self.trace_id = instr.write_trace(SpanTree(T.INFERENCE, self._wall0, self._wall0 + elapsed, attrs,
                                                   phases, error, self._parent))
        return Exemplar(self.trace_id, seconds, time.time()) if self.trace_id else None


class _Phase:
    """One phase of a request. Its metric effect depends on the phase (queue length while waiting;
    op counts and time for device partitions and host ops); its interval is kept for the trace
    when tracing is on. One class with a branch on the name: cheaper than a subclass per phase."""

    __slots__ = ("_h", "_name", "_start", "_op", "_ops", "_attrs")

    def __init__(self, h: InferenceHandle, name: str, op: str = "", ops: int | None = 0,
                 attributes: Mapping[str, Any] | None = None) -> None:
        self._h, self._name, self._op, self._ops, self._attrs = h, name, op, ops, attributes

    def __enter__(self) -> None:
        if self._name is T.QUEUE_WAIT:
            self._h._instr.recorder.queue_entered(self._h.tenant)
        self._start = time.perf_counter_ns()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        end = time.perf_counter_ns()
        h, name = self._h, self._name
        if name is T.QUEUE_WAIT:
            h._instr.recorder.queue_left(h.tenant)
        elif name is T.DEVICE_EXECUTE and self._ops is not None:
            h._ops.append((T.DEVICE_EXECUTE, "device", self._ops, (end - self._start) / 1e9))
        elif name is T.HOST_FALLBACK_OP:
            h._ops.append((self._op, "host", 1, (end - self._start) / 1e9))
        if h._phases is not None:
            h._phases.append((name, self._start, end, self._span_attributes(), exc_type.__name__ if exc_type else None))

    def _span_attributes(self) -> dict[str, Any] | None:
        if self._name is T.DEVICE_EXECUTE:
            return {**(self._attrs or {}), T.A_OPS: self._ops} if self._ops is not None else dict(self._attrs or {})
        if self._name is T.HOST_FALLBACK_OP:
            return {T.A_OP: self._op, T.A_PRECISION: "fp32"}  # host fallbacks run dequantized
        return None

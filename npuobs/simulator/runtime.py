"""The inference runtime of one simulated device: queue, batching, tenants, real kernels.

Every batch runs the real INT8 op graph on real held-out digits (``graph.execute``); its service
time comes from the work those ops did (MACs, launches, host fallbacks) at the current clock, so
throttling (F2) and host fallback (F5) show up as latency because they really cost time here.
Requests queue FIFO per device; a noisy neighbour (F7) is a tenant that floods the device and
is served first, which is how one tenant's latency suffers from another's load on shared
hardware. Golden-output canaries run the whole held-out set at a fixed interval.

Everything the runtime records goes through ``npuobs.instrumentation`` — the library a real
inference server would import — into a ``MemoryStore`` that the device serializes into its state
document. The runtime runs in virtual time on whole ticks of requests, so it uses the library's
explicit-value API (latency arrays, op counts) rather than its wall-clock context managers, and
writes the span trees of the requests the library's tail rule keeps from virtual timestamps.
"""

from __future__ import annotations

import bisect
import functools
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from npuobs.instrumentation import (
    Instrumentation,
    MemoryStore,
    Phase,
    SpanTree,
    TenantSeries,
    tracer_provider_from_env,
)
from npuobs.instrumentation import tracing as T
from npuobs.simulator.graph import DEVICE_OP_SETS, OpGraph, build_graph, execute
from npuobs.simulator.hardware import HOST_OP_SECONDS, HOST_SECONDS_PER_ELEMENT, DeviceModelSpec
from npuobs.simulator.model import QuantizedModel, load_dataset, train_fp32
from npuobs.thresholds import DEFAULT

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

BATCH_MAX = 8
QUEUE_MAX = 512
CANARY_INTERVAL_SECONDS = 15.0
MODEL_LOAD_SECONDS = 0.8  # time from load call to ready, before per-GiB transfer
MODEL_BYTES = 6 << 30  # what the served model occupies on the device (weights + runtime reserve)
ACTIVATION_BYTES_PER_REQUEST = 24 << 20
OFFLINE_ERROR_SECONDS = 0.002
OOM_SECONDS = 1e-4  # a failed allocation returns at once
NOISY_SLICE_SECONDS = 0.05  # F7: time-slice period of the shared device
NOISY_SHARE = 0.7  # F7: share of each slice the noisy neighbour holds
PRECISION = "int8"


@dataclass(frozen=True, eq=False)
class Kernels:
    """The trained FP32 model, its INT8 quantization, graphs and data: shared by every device."""

    quantized: QuantizedModel
    healthy_graph: OpGraph
    fallback_graph: OpGraph
    x_test: np.ndarray
    y_test: np.ndarray
    fp32_accuracy: float
    golden_predictions: np.ndarray


@functools.lru_cache(maxsize=2)
def kernels(seed: int = 0) -> Kernels:
    data = load_dataset(seed)
    fp32 = train_fp32(seed)
    quantized = QuantizedModel.from_fp32(fp32, data.x_calib)
    healthy = build_graph(quantized)
    fp32_acc = float(np.mean(np.argmax(fp32.forward(data.x_test), axis=1) == data.y_test))
    golden = execute(healthy, quantized, data.x_test, healthy.kinds).predictions
    return Kernels(quantized, healthy, build_graph(quantized, "gelu"), data.x_test, data.y_test, fp32_acc, golden)


@functools.lru_cache(maxsize=1024)
def _op_seconds(graph: OpGraph, spec: DeviceModelSpec, batch: int,
                clock_factor: float, host_only: bool = False) -> tuple[tuple[str, str, float], ...]:
    """(op, placement, seconds) of one batch: device ops cost a launch plus their MACs at the
    current clock; host (fallback) ops cost a copy each way plus their elements at CPU speed.
    ``host_only``: the model is switched to the CPU serving path, every op runs on the host."""
    out = []
    supported = frozenset() if host_only else graph_supported(spec)
    for op in graph.ops:
        if op.kind in supported:
            out.append((op.kind, "device", (spec.op_launch_seconds + op.macs(batch) * spec.seconds_per_mac)
                        / clock_factor))
        else:
            out.append((op.kind, "host", HOST_OP_SECONDS + op.elements(batch) * HOST_SECONDS_PER_ELEMENT))
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _segments(graph: OpGraph, spec: DeviceModelSpec, batch: int,
              clock_factor: float, host_only: bool = False) -> tuple[tuple[str, float, int, str], ...]:
    """A batch's execution as a serving runtime partitions it: (span name, seconds, device ops,
    host op) per run of consecutive device ops (one ``device_execute``) and per host op."""
    out: list[tuple[str, float, int, str]] = []
    for op, placement, seconds in _op_seconds(graph, spec, batch, clock_factor, host_only):
        if placement == "host":
            out.append((T.HOST_FALLBACK_OP, seconds, 0, op))
        elif out and out[-1][0] == T.DEVICE_EXECUTE:
            _, total, n, _ = out[-1]
            out[-1] = (T.DEVICE_EXECUTE, total + seconds, n + 1, "")
        else:
            out.append((T.DEVICE_EXECUTE, seconds, 1, ""))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _service_table(graph: OpGraph, spec: DeviceModelSpec, clock_factor: float,
                   host_only: bool = False) -> tuple[float, ...]:
    """Service seconds of a batch by its size (index 0 unused): looked up once per batch."""
    return (0.0,) + tuple(sum(s for _, _, s in _op_seconds(graph, spec, n, clock_factor, host_only))
                          for n in range(1, BATCH_MAX + 1))


def graph_supported(spec: DeviceModelSpec) -> frozenset[str]:
    return DEVICE_OP_SETS[spec.model]


@dataclass(frozen=True)
class TracingConfig:
    """How simulated runtimes trace: where spans go and the library's sampling knobs.

    ``max_traces_per_second`` is per device and second of virtual time; it caps the span trees
    written per tick, which keeps a throttled fleet (where most requests are slow) fast.
    """

    tracer_provider: TracerProvider | None = None
    head_sample_ratio: float = 0.01
    max_traces_per_second: float = 4.0
    slo_latency_seconds: float = DEFAULT.latency_slo_seconds


_configured: TracingConfig | None = None  # set by configure_tracing; None = from the environment


def configure_tracing(config: TracingConfig | None) -> None:
    """Trace the runtimes created from now on with ``config`` (None: back to the environment, where
    ``$NPUOBS_OTLP_TRACES_ENDPOINT`` turns OTLP export on and its absence leaves tracing off)."""
    global _configured
    _configured = config


def current_tracing() -> TracingConfig:
    return _configured if _configured is not None else TracingConfig(tracer_provider_from_env())


@dataclass
class Conditions:
    """What the device's state and active faults impose on the runtime for one tick."""

    online: bool = True
    clock_factor: float = 1.0
    fallback: bool = False  # F5
    corrupted_model: QuantizedModel | None = None  # F3
    corrupt_rng: np.random.Generator | None = None  # F8
    memory_free_bytes: int = 1 << 40  # F4 shrinks it
    priority_tenant: str | None = None  # F7
    host_only: bool = False  # the model is switched to the CPU serving path (control API)
    drained: bool = False  # the device is drained (control API): no new requests, no canary


@dataclass
class TickResult:
    busy_seconds: float = 0.0
    oom_events: int = 0
    device_errors: int = 0


@dataclass
class _Ended:
    """Requests of one outcome that ended in a tick, gathered cheaply and turned into arrays once.

    Batched requests (served, or failed to allocate) share their batch's start and end, kept as one
    scalar per batch; requests failed one by one (offline, rejected) each have their own end.
    """

    tenant_idx: list[np.ndarray] = field(default_factory=list)
    arrived: list[np.ndarray] = field(default_factory=list)
    started: list[float] = field(default_factory=list)
    ended: list[float | np.ndarray] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)

    def add_batch(self, tenant_idx: np.ndarray, arrived: np.ndarray, started: float, ended: float) -> None:
        self._add(tenant_idx, arrived, ended)
        self.started.append(started)

    def add_batches(self, tenant_idx: np.ndarray, arrived: np.ndarray, started: np.ndarray, ended: np.ndarray,
                    sizes: np.ndarray) -> None:
        """Many batches at once: requests in batch order, and one start, end and size per batch."""
        self.tenant_idx.append(tenant_idx)
        self.arrived.append(arrived)
        self.started.extend(started.tolist())
        self.ended.extend(ended.tolist())
        self.sizes.extend(sizes.tolist())

    def add_each(self, tenant_idx: np.ndarray, arrived: np.ndarray, ended: np.ndarray) -> None:
        self._add(tenant_idx, arrived, ended)

    def _add(self, tenant_idx: np.ndarray, arrived: np.ndarray, ended: float | np.ndarray) -> None:
        self.tenant_idx.append(tenant_idx)
        self.arrived.append(arrived)
        self.ended.append(ended)
        self.sizes.append(tenant_idx.size)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(tenant index, arrived, ended, started, batch size) per request; started and batch size
        are 0 for requests that never reached the device."""
        sizes = np.asarray(self.sizes)
        if self.started:
            ended = np.repeat(np.asarray(self.ended), sizes)
            started, batch = np.repeat(np.asarray(self.started), sizes), np.repeat(sizes, sizes)
        else:
            ended = np.concatenate(self.ended)
            started, batch = np.zeros(ended.size), np.zeros(ended.size, dtype=np.int64)
        return np.concatenate(self.tenant_idx), np.concatenate(self.arrived), ended, started, batch


def _ns(t: float) -> int:
    return int(t * 1e9)


class InferenceRuntime:
    """Serves one model for several tenants on one device; the last tenant is the golden canary."""

    def __init__(self, spec: DeviceModelSpec, model_name: str, tenants: tuple[str, ...],
                 rng: np.random.Generator, seed: int = 0, *, node: str = "", device: str = "",
                 tracing: TracingConfig | None = None) -> None:
        self.spec = spec
        self.model_name = model_name
        self.tenants = tenants
        self.rng = rng
        self.k = kernels(seed)
        self.store = MemoryStore(tenants, canary_tenant=tenants[-1])
        tracing = tracing or current_tracing()
        self.instr = Instrumentation(
            sink=self.store, tracer_provider=tracing.tracer_provider, node=node, device=device, vendor=spec.vendor,
            model=model_name, slo_latency_seconds=tracing.slo_latency_seconds,
            head_sample_ratio=tracing.head_sample_ratio, max_traces_per_second=tracing.max_traces_per_second,
            # sampling (and ids) draw from their own streams: tracing never changes what is simulated
            seed=zlib.crc32(f"{seed}/{node}/{device}".encode()))
        self.recorder = self.instr.recorder
        self._untraced_ids = np.random.default_rng(zlib.crc32(f"ids/{seed}/{node}/{device}".encode()))
        self.queue_t = np.empty(0)  # arrival times of waiting requests
        self.queue_tenant = np.empty(0, dtype=np.int64)
        self.busy_until = 0.0
        self.loaded_at: float | None = None  # virtual time the model becomes ready; None = not loaded
        self.next_canary = 0.0

    @property
    def stats(self) -> dict[str, TenantSeries]:
        """Per-tenant cumulative series (``requests`` by outcome, latency buckets, ...)."""
        return self.store.tenants

    # -- lifecycle ---------------------------------------------------------------------------
    def unload(self) -> None:
        """Drop the model and the queue (device reset / offline): the next request cold-starts."""
        self.loaded_at = None

    def _ensure_loaded(self, now: float) -> None:
        if self.loaded_at is None:
            seconds = MODEL_LOAD_SECONDS + MODEL_BYTES / (8 << 30)
            self.loaded_at = now + seconds
            self.busy_until = max(self.busy_until, self.loaded_at)
            self.recorder.record_model_load(seconds)
            if self.instr.tracing:
                self.instr.write_trace(SpanTree(T.MODEL_LOAD, _ns(now), _ns(self.loaded_at), self.instr.attributes()))

    @property
    def queue_length(self) -> int:
        return int(self.queue_t.size)

    # -- one tick ----------------------------------------------------------------------------
    def step(self, t0: float, dt: float, arrivals: dict[str, np.ndarray], cond: Conditions) -> TickResult:
        result = TickResult()
        ended: dict[str, _Ended] = {}
        t1 = t0 + dt
        graph = self.k.fallback_graph if cond.fallback else self.k.healthy_graph
        if not cond.online:
            self._enqueue(arrivals)
            self._fail_all(result, ended)
            self.unload()
            self.busy_until = t1
            self._finish(t0, t1, ended, graph, cond)
            return result
        self._ensure_loaded(t0)
        self._count_cold_starts(arrivals)
        self._enqueue(arrivals)
        clock = max(t0, self.busy_until)
        model = cond.corrupted_model or self.k.quantized
        supported = frozenset() if cond.host_only else graph_supported(self.spec)
        batch_sizes: list[int] = []
        if cond.priority_tenant is None:
            clock = self._run_fifo(clock, t1, graph, cond, result, ended, batch_sizes)
        while self.queue_t.size and clock < t1:
            ready = self.queue_t <= clock
            slice_end = self._noisy_slice_end(clock, cond.priority_tenant)
            if slice_end is not None:
                # the neighbour owns the device for this slice: only its requests run, and its
                # background kernels keep the device busy while it has none queued
                ready &= self.queue_tenant == self.tenants.index(cond.priority_tenant)
                if not ready.any():
                    mine = self.queue_t[self.queue_tenant == self.tenants.index(cond.priority_tenant)]
                    until = min(slice_end, float(mine.min()) if mine.size else slice_end, t1)
                    result.busy_seconds += max(until - clock, 0.0)
                    clock = max(until, clock + 1e-6)
                    continue
            elif not ready.any():
                clock = float(self.queue_t.min())
                continue
            chosen = self._pick_batch(ready)
            arrived, tenant_idx = self.queue_t[chosen], self.queue_tenant[chosen]
            keep = np.ones(self.queue_t.size, dtype=bool)
            keep[chosen] = False
            self.queue_t, self.queue_tenant = self.queue_t[keep], self.queue_tenant[keep]
            clock = self._run_batch(arrived, tenant_idx, clock, graph, cond, result, ended, batch_sizes)
        self.busy_until = clock
        if batch_sizes:
            self._serve(graph, model, supported, cond, batch_sizes, result)
        self._reject_overflow(clock, ended)
        if t0 >= self.next_canary and not cond.drained:
            self._canary(graph, model, supported, cond, result)
            self.next_canary = t0 + CANARY_INTERVAL_SECONDS
        result.busy_seconds = min(result.busy_seconds, dt)
        self._finish(t0, t1, ended, graph, cond)
        return result

    def _run_fifo(self, clock: float, t1: float, graph: OpGraph, cond: Conditions, result: TickResult,
                  ended: dict[str, _Ended], batch_sizes: list[int]) -> float:
        """Serve the queue in arrival order until ``t1``; returns the device clock.

        The soak's hot loop: at 150 req/s a device mostly serves batches of one or two, so this
        runs once per request. The queue is sorted by arrival, so the ready requests are always
        a prefix: the loop walks a head index over plain Python floats with ``bisect`` and a
        per-tick table of batch service times, and the finished batches are turned into arrays
        once at the end. Same batches, same order, same clock as the general loop below.
        """
        times = self.queue_t.tolist()
        size = len(times)
        service = _service_table(graph, self.spec, cond.clock_factor, cond.host_only)
        fits = cond.memory_free_bytes // ACTIVATION_BYTES_PER_REQUEST  # largest batch that can allocate
        bounds, starts, ends = [0], [], []
        head = 0
        while head < size and clock < t1:
            if times[head] > clock:
                clock = times[head]
                continue
            end = min(bisect.bisect_right(times, clock, head), head + BATCH_MAX)
            starts.append(clock)
            clock += service[end - head] if end - head <= fits else OOM_SECONDS
            ends.append(clock)
            bounds.append(end)
            head = end
        if starts:
            sizes = np.diff(bounds)
            failed = sizes > fits
            served = np.repeat(~failed, sizes)
            tenant_idx, arrived = self.queue_tenant[:head], self.queue_t[:head]
            groups = [("success", ~failed, served), ("oom", failed, ~served)]
            for outcome, mask, per_request in groups[::-1] if failed[0] else groups:  # first outcome first
                if mask.any():
                    ended.setdefault(outcome, _Ended()).add_batches(
                        tenant_idx[per_request], arrived[per_request], np.asarray(starts)[mask],
                        np.asarray(ends)[mask], sizes[mask])
            result.oom_events += int(np.count_nonzero(failed))
            batch_sizes.extend(sizes[~failed].tolist())
        self.queue_t, self.queue_tenant = self.queue_t[head:], self.queue_tenant[head:]
        return clock

    def _run_batch(self, arrived: np.ndarray, tenant_idx: np.ndarray, clock: float, graph: OpGraph,
                   cond: Conditions, result: TickResult, ended: dict[str, _Ended], batch_sizes: list[int]) -> float:
        """Run one batch taken off the queue at ``clock`` (or fail its allocation); returns the new clock."""
        if arrived.size * ACTIVATION_BYTES_PER_REQUEST > cond.memory_free_bytes:
            result.oom_events += 1
            ended.setdefault("oom", _Ended()).add_batch(tenant_idx, arrived, clock, clock + OOM_SECONDS)
            return clock + OOM_SECONDS
        start = clock
        clock += _service_table(graph, self.spec, cond.clock_factor, cond.host_only)[arrived.size]
        ended.setdefault("success", _Ended()).add_batch(tenant_idx, arrived, start, clock)
        batch_sizes.append(arrived.size)
        return clock

    def _serve(self, graph: OpGraph, model: QuantizedModel, supported: frozenset[str], cond: Conditions,
               batch_sizes: list[int], result: TickResult) -> None:
        """Run the tick's batches through the real kernels and record their ops and busy time.

        Rows are independent through the MLP, so the tick's batches run as one concatenated
        call (same outputs, a fraction of the Python overhead); op counts and times are still
        accounted batch by batch, as the device would have executed them.
        """
        images = self.rng.integers(0, len(self.k.x_test), size=sum(batch_sizes))
        execute(graph, model, self.k.x_test[images], supported, corrupt_output_rng=cond.corrupt_rng)
        sizes, counts = np.unique(np.asarray(batch_sizes), return_counts=True)
        ops: dict[tuple[str, str], list[float]] = {}
        for n, times in zip(sizes.tolist(), counts.tolist(), strict=True):
            for op, placement, seconds in _op_seconds(graph, self.spec, n, cond.clock_factor, cond.host_only):
                acc = ops.setdefault((op, placement), [0, 0.0])
                acc[0] += times
                acc[1] += seconds * times
                result.busy_seconds += seconds * times
        for (op, placement), (count, seconds) in ops.items():
            self.recorder.record_ops(op, placement, int(count), seconds)

    def _enqueue(self, arrivals: dict[str, np.ndarray]) -> None:
        times = [self.queue_t] + [arrivals[t] for t in self.tenants if t in arrivals]
        tenants = [self.queue_tenant] + [np.full(arrivals[t].size, i) for i, t in enumerate(self.tenants)
                                         if t in arrivals]
        t, who = np.concatenate(times), np.concatenate(tenants).astype(np.int64)
        order = np.argsort(t, kind="stable")
        self.queue_t, self.queue_tenant = t[order], who[order]

    def _pick_batch(self, ready: np.ndarray) -> np.ndarray:
        """Indices of the next batch: the oldest ready requests, FIFO."""
        return np.flatnonzero(ready)[:BATCH_MAX]

    def _noisy_slice_end(self, clock: float, priority_tenant: str | None) -> float | None:
        """End of the noisy neighbour's time slice if ``clock`` falls in one (F7), else None.

        Time-slicing is how shared accelerators are multiplexed: the neighbour owns the first
        ``NOISY_SHARE`` of every ``NOISY_SLICE_SECONDS``, so other tenants' requests that arrive
        in it wait up to the rest of the slice while the neighbour's own are served at once.
        """
        if priority_tenant not in self.tenants:
            return None
        start = clock - clock % NOISY_SLICE_SECONDS
        end = start + NOISY_SHARE * NOISY_SLICE_SECONDS
        return end if clock < end else None

    def _count_cold_starts(self, arrivals: dict[str, np.ndarray]) -> None:
        """New requests that arrive before the model is ready wait for its load: cold starts."""
        for tenant, times in arrivals.items():
            if tenant in self.tenants:
                self.recorder.record_cold_starts(tenant, int(np.count_nonzero(times < self.loaded_at)))

    def _fail_all(self, result: TickResult, ended: dict[str, _Ended]) -> None:
        if self.queue_t.size:
            result.device_errors += 1
            ended.setdefault("error", _Ended()).add_each(self.queue_tenant, self.queue_t,
                                                         self.queue_t + OFFLINE_ERROR_SECONDS)
        self.queue_t, self.queue_tenant = np.empty(0), np.empty(0, dtype=np.int64)

    def _reject_overflow(self, now: float, ended: dict[str, _Ended]) -> None:
        if self.queue_t.size <= QUEUE_MAX:
            return
        drop = self.queue_t.size - QUEUE_MAX  # newest requests are turned away (backpressure)
        arrived = self.queue_t[-drop:]
        ended.setdefault("rejected", _Ended()).add_each(self.queue_tenant[-drop:], arrived,
                                                        np.maximum(now, arrived + 1e-4))
        self.queue_t, self.queue_tenant = self.queue_t[:-drop], self.queue_tenant[:-drop]

    def _canary(self, graph: OpGraph, model: QuantizedModel, supported: frozenset[str], cond: Conditions,
                result: TickResult) -> None:
        """Run the golden canary (the last tenant) over the whole held-out set, as one request."""
        run = execute(graph, model, self.k.x_test, supported, corrupt_output_rng=cond.corrupt_rng)
        service = 0.0
        for op, placement, seconds in _op_seconds(graph, self.spec, len(self.k.x_test), cond.clock_factor,
                                                  cond.host_only):
            self.recorder.record_ops(op, placement, 1, seconds)
            service += seconds
        result.busy_seconds += service
        canary = self.tenants[-1]
        self.recorder.record_latencies(canary, np.array([service]))
        device_acc = float(np.mean(run.predictions == self.k.y_test))
        self.recorder.record_canary(canary, len(self.k.x_test),
                                    int(np.count_nonzero(run.predictions != self.k.golden_predictions)),
                                    max(0.0, self.k.fp32_accuracy - device_acc))

    # -- recording ---------------------------------------------------------------------------
    def _finish(self, t0: float, t1: float, ended: dict[str, _Ended], graph: OpGraph, cond: Conditions) -> None:
        """Record the tick's finished requests and queue; first write the span trees the library's
        tail rule keeps, so their trace ids go in as exemplars with their latencies."""
        groups = {outcome: e.arrays() for outcome, e in ended.items()}
        kept = self._trace(t0, groups, graph, cond) if groups else {}
        for outcome, (who, arrived, done, _, _) in groups.items():
            latency = done - arrived
            for i, tenant in enumerate(self.tenants):
                mine = np.flatnonzero(who == i)
                if mine.size:
                    # exemplar positions within this tenant's slice (``mine`` is sorted)
                    exemplars = {int(np.searchsorted(mine, j)): tid for (o, j), tid in kept.items()
                                 if o == outcome and who[j] == i}
                    self.recorder.record_latencies(tenant, latency[mine], outcome, exemplars, timestamp=t1)
        waiting = np.bincount(self.queue_tenant, minlength=len(self.tenants)).tolist()
        for tenant, n in zip(self.tenants, waiting, strict=True):
            self.recorder.set_queue_length(tenant, n)

    def _trace(self, t0: float, groups: dict[str, tuple[np.ndarray, ...]], graph: OpGraph,
               cond: Conditions) -> dict[tuple[str, int], str]:
        """Write the span trees of the requests the tail rule keeps; (outcome, index) -> trace id.

        With tracing off the same requests are kept and get a trace id of their own, so the
        published exemplars (which dashboards link from) do not depend on a trace backend
        being configured; only with tracing on do those ids name exported traces.
        """
        outcomes = list(groups)
        offsets = np.cumsum([0] + [g[0].size for g in groups.values()])
        latency = np.concatenate([g[2] - g[1] for g in groups.values()])
        failed = np.repeat([o != "success" for o in outcomes], np.diff(offsets))
        kept: dict[tuple[str, int], str] = {}
        for k in self.instr.policy.select(latency, failed, now=t0).tolist():
            g = int(np.searchsorted(offsets, k, side="right")) - 1
            outcome, j = outcomes[g], k - int(offsets[g])
            if not self.instr.tracing:
                kept[(outcome, j)] = self._untraced_ids.bytes(16).hex()
                continue
            who, arrived, done, started, batch = (a[j] for a in groups[outcome])
            trace_id = self.instr.write_trace(self._tree(outcome, int(who), float(arrived), float(done),
                                                         float(started), int(batch), graph, cond))
            if trace_id:
                kept[(outcome, j)] = trace_id
        return kept

    def _tree(self, outcome: str, who: int, arrived: float, done: float, started: float, batch: int,
              graph: OpGraph, cond: Conditions) -> SpanTree:
        """One request's span tree in virtual time: where its latency went."""
        attrs = self.instr.attributes(**{T.A_TENANT: self.tenants[who], T.A_BATCH: batch or 1,
                                         T.A_PRECISION: PRECISION, T.A_OUTCOME: outcome})
        if self.loaded_at is not None and arrived < self.loaded_at:
            attrs[T.A_COLD_START] = True
        phases: list[Phase] = []
        error = None
        if outcome == "success":
            phases.append(Phase(T.QUEUE_WAIT, _ns(arrived), _ns(started)))
            clock = {T.A_CLOCK: self.spec.clock_max_hz * cond.clock_factor, T.A_CLOCK_MAX: self.spec.clock_max_hz,
                     T.A_THROTTLED: cond.clock_factor < 1.0}
            t = started
            fallbacks = []
            for name, seconds, ops, host_op in _segments(graph, self.spec, batch, cond.clock_factor, cond.host_only):
                if name == T.HOST_FALLBACK_OP:
                    fallbacks.append(host_op)
                    span_attrs = {T.A_OP: host_op, T.A_PRECISION: "fp32"}
                else:
                    span_attrs = {T.A_OPS: ops, **clock}
                phases.append(Phase(name, _ns(t), _ns(t + seconds), span_attrs))
                t += seconds
            if fallbacks:
                attrs[T.A_FALLBACK_OPS] = tuple(fallbacks)
        elif outcome == "oom":
            error = "device memory allocation failed"
            phases += [Phase(T.QUEUE_WAIT, _ns(arrived), _ns(started)),
                       Phase(T.DEVICE_EXECUTE, _ns(started), _ns(done), error=error)]
        elif outcome == "rejected":
            error = "queue full"
            phases.append(Phase(T.QUEUE_WAIT, _ns(arrived), _ns(done), error=error))
        else:
            error = "device offline"
            phases.append(Phase(T.DEVICE_EXECUTE, _ns(arrived), _ns(done), error=error))
        return SpanTree(T.INFERENCE, _ns(arrived), _ns(done), attrs, phases, error)

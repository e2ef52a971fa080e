"""The inference runtime of one simulated device: queue, batching, tenants, real kernels.

Every batch runs the real INT8 op graph on real held-out digits (``graph.execute``); its service
time comes from the work those ops did (MACs, launches, host fallbacks) at the current clock, so
throttling (F2) and host fallback (F5) show up as latency because they really cost time here.
Requests queue FIFO per device; a noisy neighbour (F7) is a tenant that floods the device and
is served first, which is how one tenant's latency suffers from another's load on shared
hardware. Golden-output canaries run the whole held-out set at a fixed interval.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from npuobs.schema import LATENCY_BUCKETS, REQUEST_OUTCOMES
from npuobs.simulator.graph import DEVICE_OP_SETS, OpGraph, build_graph, execute
from npuobs.simulator.hardware import HOST_OP_SECONDS, HOST_SECONDS_PER_ELEMENT, DeviceModelSpec
from npuobs.simulator.model import QuantizedModel, load_dataset, train_fp32

BATCH_MAX = 8
QUEUE_MAX = 512
CANARY_INTERVAL_SECONDS = 15.0
MODEL_LOAD_SECONDS = 0.8  # time from load call to ready, before per-GiB transfer
MODEL_BYTES = 6 << 30  # what the served model occupies on the device (weights + runtime reserve)
ACTIVATION_BYTES_PER_REQUEST = 24 << 20
OFFLINE_ERROR_SECONDS = 0.002
NOISY_SLICE_SECONDS = 0.05  # F7: time-slice period of the shared device
NOISY_SHARE = 0.7  # F7: share of each slice the noisy neighbour holds
_BOUNDS = np.asarray(LATENCY_BUCKETS)


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
                clock_factor: float) -> tuple[tuple[str, str, float], ...]:
    """(op, placement, seconds) of one batch: device ops cost a launch plus their MACs at the
    current clock; host (fallback) ops cost a copy each way plus their elements at CPU speed."""
    out = []
    supported = graph_supported(spec)
    for op in graph.ops:
        if op.kind in supported:
            out.append((op.kind, "device", (spec.op_launch_seconds + op.macs(batch) * spec.seconds_per_mac)
                        / clock_factor))
        else:
            out.append((op.kind, "host", HOST_OP_SECONDS + op.elements(batch) * HOST_SECONDS_PER_ELEMENT))
    return tuple(out)


def graph_supported(spec: DeviceModelSpec) -> frozenset[str]:
    return DEVICE_OP_SETS[spec.model]


@dataclass
class TenantStats:
    """Cumulative runtime counters for one tenant (persisted with the device's state)."""

    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REQUEST_OUTCOMES, 0))
    cold_starts: int = 0
    slowest_recent: tuple[str, float] | None = None

    def observe(self, latencies: np.ndarray, outcome: str) -> None:
        if latencies.size == 0:
            return
        idx = np.searchsorted(_BOUNDS, latencies, side="left")
        for i, n in zip(*np.unique(idx, return_counts=True), strict=True):
            self.bucket_counts[int(i)] += int(n)
        self.latency_sum += float(latencies.sum())
        self.requests[outcome] += int(latencies.size)


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


@dataclass
class TickResult:
    busy_seconds: float = 0.0
    oom_events: int = 0
    device_errors: int = 0
    ops: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # -> [count, seconds]


class InferenceRuntime:
    """Serves one model for several tenants on one device."""

    def __init__(self, spec: DeviceModelSpec, model_name: str, tenants: tuple[str, ...],
                 rng: np.random.Generator, seed: int = 0) -> None:
        self.spec = spec
        self.model_name = model_name
        self.tenants = tenants
        self.rng = rng
        self.k = kernels(seed)
        self.stats: dict[str, TenantStats] = {t: TenantStats() for t in tenants}
        self.queue_t = np.empty(0)  # arrival times of waiting requests
        self.queue_tenant = np.empty(0, dtype=np.int64)
        self.busy_until = 0.0
        self.loaded_at: float | None = None  # virtual time the model becomes ready; None = not loaded
        self.model_load_seconds: float | None = None
        self.golden_checks = 0
        self.golden_mismatches = 0
        self.accuracy_delta: float | None = None
        self.next_canary = 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    def unload(self) -> None:
        """Drop the model and the queue (device reset / offline): the next request cold-starts."""
        self.loaded_at = None

    def _ensure_loaded(self, now: float) -> None:
        if self.loaded_at is None:
            self.model_load_seconds = MODEL_LOAD_SECONDS + MODEL_BYTES / (8 << 30)
            self.loaded_at = now + self.model_load_seconds
            self.busy_until = max(self.busy_until, self.loaded_at)

    @property
    def queue_length(self) -> int:
        return int(self.queue_t.size)

    # -- one tick ----------------------------------------------------------------------------
    def step(self, t0: float, dt: float, arrivals: dict[str, np.ndarray], cond: Conditions) -> TickResult:
        result = TickResult()
        t1 = t0 + dt
        if not cond.online:
            self._enqueue(arrivals)
            self._fail_all(result)
            self.unload()
            self.busy_until = t1
            return result
        self._ensure_loaded(t0)
        self._count_cold_starts(arrivals)
        self._enqueue(arrivals)
        clock = max(t0, self.busy_until)
        model = cond.corrupted_model or self.k.quantized
        graph = self.k.fallback_graph if cond.fallback else self.k.healthy_graph
        supported = graph_supported(self.spec)
        served_t, served_who, done_at, batch_sizes = [], [], [], []
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
            if chosen.size * ACTIVATION_BYTES_PER_REQUEST > cond.memory_free_bytes:
                result.oom_events += 1
                self._record(tenant_idx, np.full(chosen.size, clock - arrived.min() + 1e-4), "oom")
                clock += 1e-4
                continue
            clock += self._batch_seconds(graph, chosen.size, cond.clock_factor)
            served_t.append(arrived)
            served_who.append(tenant_idx)
            done_at.append(np.full(chosen.size, clock))
            batch_sizes.append(chosen.size)
        self.busy_until = clock
        if batch_sizes:
            self._serve(graph, model, supported, cond, batch_sizes, result)
            self._record(np.concatenate(served_who), np.concatenate(done_at) - np.concatenate(served_t), "success")
        self._reject_overflow(clock)
        if t0 >= self.next_canary:
            self._canary(graph, model, supported, cond, result)
            self.next_canary = t0 + CANARY_INTERVAL_SECONDS
        result.busy_seconds = min(result.busy_seconds, dt)
        return result

    def _serve(self, graph: OpGraph, model: QuantizedModel, supported: frozenset[str], cond: Conditions,
               batch_sizes: list[int], result: TickResult) -> None:
        """Run the tick's batches through the real kernels and account their ops and busy time.

        Rows are independent through the MLP, so the tick's batches run as one concatenated
        call (same outputs, a fraction of the Python overhead); op counts and times are still
        accounted batch by batch, as the device would have executed them.
        """
        images = self.rng.integers(0, len(self.k.x_test), size=sum(batch_sizes))
        execute(graph, model, self.k.x_test[images], supported, corrupt_output_rng=cond.corrupt_rng)
        sizes, counts = np.unique(np.asarray(batch_sizes), return_counts=True)
        for n, times in zip(sizes.tolist(), counts.tolist(), strict=True):
            for op, placement, seconds in _op_seconds(graph, self.spec, n, cond.clock_factor):
                acc = result.ops.setdefault((op, placement), [0, 0.0])
                acc[0] += times
                acc[1] += seconds * times
                result.busy_seconds += seconds * times

    def _batch_seconds(self, graph: OpGraph, n: int, clock_factor: float) -> float:
        return sum(s for _, _, s in _op_seconds(graph, self.spec, n, clock_factor))

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

    def _record(self, tenant_idx: np.ndarray, latencies: np.ndarray, outcome: str) -> None:
        for i, tenant in enumerate(self.tenants):
            mine = latencies[tenant_idx == i]
            stats = self.stats[tenant]
            stats.observe(mine, outcome)
            if outcome == "success" and mine.size:
                worst = float(mine.max())
                prev = stats.slowest_recent
                if prev is None or worst >= prev[1] or self.rng.random() < 0.05:
                    stats.slowest_recent = (self.rng.bytes(16).hex(), worst)

    def _count_cold_starts(self, arrivals: dict[str, np.ndarray]) -> None:
        """New requests that arrive before the model is ready wait for its load: cold starts."""
        for tenant, times in arrivals.items():
            if tenant in self.stats:
                self.stats[tenant].cold_starts += int(np.count_nonzero(times < self.loaded_at))

    def _fail_all(self, result: TickResult) -> None:
        if self.queue_t.size:
            result.device_errors += 1
            self._record(self.queue_tenant, np.full(self.queue_t.size, OFFLINE_ERROR_SECONDS), "error")
        self.queue_t, self.queue_tenant = np.empty(0), np.empty(0, dtype=np.int64)

    def _reject_overflow(self, now: float) -> None:
        if self.queue_t.size <= QUEUE_MAX:
            return
        drop = self.queue_t.size - QUEUE_MAX  # newest requests are turned away (backpressure)
        self._record(self.queue_tenant[-drop:], np.maximum(now - self.queue_t[-drop:], 1e-4), "rejected")
        self.queue_t, self.queue_tenant = self.queue_t[:-drop], self.queue_tenant[:-drop]

    def _canary(self, graph: OpGraph, model: QuantizedModel, supported: frozenset[str], cond: Conditions,
                result: TickResult) -> None:
        """Run the golden canary (the last tenant) over the whole held-out set, as one request."""
        run = execute(graph, model, self.k.x_test, supported, corrupt_output_rng=cond.corrupt_rng)
        service = 0.0
        for op, placement, seconds in _op_seconds(graph, self.spec, len(self.k.x_test), cond.clock_factor):
            acc = result.ops.setdefault((op, placement), [0, 0.0])
            acc[0] += 1
            acc[1] += seconds
            service += seconds
        result.busy_seconds += service
        self._record(np.array([len(self.tenants) - 1]), np.array([service]), "success")
        self.golden_checks += len(self.k.x_test)
        self.golden_mismatches += int(np.count_nonzero(run.predictions != self.k.golden_predictions))
        device_acc = float(np.mean(run.predictions == self.k.y_test))
        self.accuracy_delta = max(0.0, self.k.fp32_accuracy - device_acc)

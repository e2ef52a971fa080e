"""Where recorded runtime metrics live, and how they leave: a state document or a Prometheus scrape.

Every recording lands in a ``MemoryStore``: the cumulative runtime series of one device identity
(node, device, vendor, served model), in plain numbers under one lock. A request costs a few list
and dict updates instead of one locked prometheus_client call per metric touched (~1 µs each,
six or seven per request), which is what keeps the per-inference overhead within a few µs.

Two ways out, the pluggable part:

- the simulator puts its device's store into the typed device state document
  (``npuobs.statedoc``) that the ``sim`` backend reads (``runtime_state``/``ops_state``, and
  ``restore`` after a restart);
- a real server exposes its stores through ``PrometheusSink``, a prometheus_client collector that
  renders them at scrape time as the schema's metric families, with the slowest recent kept trace
  as an OpenMetrics exemplar on the latency bucket that holds it; families, buckets, exemplars
  and the ops roll-up come from ``npuobs.families``, the code the exporter renders with.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from npuobs.families import add_ops, family, histogram_buckets, non_empty
from npuobs.schema import LATENCY_BUCKETS, OP_PLACEMENTS, REQUEST_OUTCOMES
from npuobs.statedoc import OpCount, RuntimeState, TenantRuntime
from npuobs.thresholds import DEFAULT

_BOUNDS = np.asarray(LATENCY_BUCKETS)
EXEMPLAR_MAX_AGE_SECONDS = 60.0
"""How long a store keeps its slowest exemplar before any newer kept trace replaces it."""


class Identity(NamedTuple):
    """What every series of one instrumented runtime shares: the schema's device/workload labels."""

    node: str
    device: str
    vendor: str
    model: str


class Exemplar(NamedTuple):
    """A kept trace of one request: its trace id (32 hex digits), latency and end (unix seconds)."""

    trace_id: str
    seconds: float
    timestamp: float


@dataclass
class TenantSeries:
    """Cumulative runtime series of one tenant, in the shape of the device state document."""

    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))  # per bucket, +Inf last
    latency_sum: float = 0.0
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REQUEST_OUTCOMES, 0))
    cold_starts: int = 0
    queue_length: int = 0
    exemplar: Exemplar | None = None

    def offer(self, e: Exemplar) -> None:
        """Keep the slowest recent kept trace: a slower one replaces it at once, any newer one
        once it is older than ``EXEMPLAR_MAX_AGE_SECONDS`` (so it does not pin a past incident)."""
        cur = self.exemplar
        if cur is None or e.seconds >= cur.seconds or e.timestamp - cur.timestamp > EXEMPLAR_MAX_AGE_SECONDS:
            self.exemplar = e


class MemoryStore:
    """Cumulative runtime metrics of one device identity; what a ``Recorder`` writes into.

    Its serialized form is the runtime part of the simulator's device state document, which
    ``npuobs.devices.sim`` parses: ``runtime`` (per-tenant latency buckets, sums, outcomes, cold
    starts, queue length, exemplar; model load; canary results) and the counters' ``ops`` list.
    That layout holds canary results once per device, so a store takes them for one canary tenant.
    """

    def __init__(self, tenants: Iterable[str] = (), canary_tenant: str = DEFAULT.canary_tenant) -> None:
        self.tenants: dict[str, TenantSeries] = {t: TenantSeries() for t in tenants}
        self.canary_tenant = canary_tenant
        self.identity: Identity | None = None
        self.ops: dict[tuple[str, str], list[float]] = {}  # (op, placement) -> [count, seconds]
        self.model_load_seconds: float | None = None
        self.accuracy_delta: float | None = None
        self.golden_checks = 0
        self.golden_mismatches = 0
        self.lock = threading.Lock()  # a live server records from many threads; readers take it too

    def series(self, identity: Identity) -> MemoryStore:
        """The store itself, as a sink of one identity (one store per device document)."""
        if self.identity not in (None, identity):
            raise ValueError(f"this store already holds {self.identity}; one MemoryStore per device")
        self.identity = identity
        return self

    def _t(self, tenant: str) -> TenantSeries:
        s = self.tenants.get(tenant)
        if s is None:
            s = self.tenants[tenant] = TenantSeries()
        return s

    # -- recording (called by Recorder, validated there) ----------------------------------------------
    def observe(self, tenant: str, seconds: float, outcome: str, exemplar: Exemplar | None,
                ops: Sequence[tuple[str, str, int, float]], cold_start: bool) -> None:
        """One finished request, under one lock acquisition."""
        i = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        with self.lock:
            s = self.tenants.get(tenant) or self._t(tenant)
            s.bucket_counts[i] += 1
            s.latency_sum += seconds
            s.requests[outcome] += 1
            if exemplar is not None:
                s.offer(exemplar)
            if cold_start:
                s.cold_starts += 1
            for op, placement, count, op_seconds in ops:
                self._add_ops(op, placement, count, op_seconds)

    def observe_many(self, tenant: str, seconds: np.ndarray, outcome: str, exemplars: list[Exemplar]) -> None:
        """Many requests: ``seconds`` of those without a kept trace, one exemplar for each of the others."""
        if seconds.size == 0 and not exemplars:
            return
        if exemplars:
            seconds = np.concatenate([seconds, [e.seconds for e in exemplars]])
        counts = np.bincount(np.searchsorted(_BOUNDS, seconds, side="left"), minlength=len(_BOUNDS) + 1).tolist()
        total = float(seconds.sum())
        with self.lock:
            s = self._t(tenant)
            s.bucket_counts = [a + b for a, b in zip(s.bucket_counts, counts, strict=True)]
            s.latency_sum += total
            s.requests[outcome] += int(seconds.size)
            for e in exemplars:
                s.offer(e)

    def add_ops(self, op: str, placement: str, count: int, seconds: float) -> None:
        with self.lock:
            self._add_ops(op, placement, count, seconds)

    def _add_ops(self, op: str, placement: str, count: int, seconds: float) -> None:
        acc = self.ops.get((op, placement))
        if acc is None:
            acc = self.ops[(op, placement)] = [0, 0.0]
        acc[0] += count
        acc[1] += seconds

    def set_queue_length(self, tenant: str, length: int) -> None:
        with self.lock:
            self._t(tenant).queue_length = length

    def add_queue_length(self, tenant: str, delta: int) -> None:
        with self.lock:
            (self.tenants.get(tenant) or self._t(tenant)).queue_length += delta

    def set_model_load(self, seconds: float) -> None:
        self.model_load_seconds = seconds

    def add_cold_starts(self, tenant: str, count: int) -> None:
        with self.lock:
            self._t(tenant).cold_starts += count

    def add_canary(self, tenant: str, checks: int, mismatches: int, accuracy_delta: float | None) -> None:
        if tenant != self.canary_tenant:
            raise ValueError(f"canary results are kept for tenant {self.canary_tenant!r} only, not {tenant!r}")
        with self.lock:
            self._t(tenant)
            self.golden_checks += checks
            self.golden_mismatches += mismatches
            if accuracy_delta is not None:
                self.accuracy_delta = accuracy_delta

    # -- the state document ---------------------------------------------------------------------------
    def runtime_state(self) -> RuntimeState:
        """The document's ``runtime`` part (``npuobs.statedoc``)."""
        with self.lock:
            return RuntimeState(
                model=self.identity.model if self.identity else "",
                queue_length=sum(s.queue_length for s in self.tenants.values()),
                model_load_seconds=self.model_load_seconds,
                accuracy_delta_ratio=self.accuracy_delta,
                golden_checks_total=self.golden_checks,
                golden_mismatches_total=self.golden_mismatches,
                tenants={t: TenantRuntime(buckets=tuple(s.bucket_counts), sum=s.latency_sum,
                                          requests=dict(s.requests), cold_starts=s.cold_starts,
                                          queue_length=s.queue_length,
                                          exemplar=tuple(s.exemplar) if s.exemplar else None)
                         for t, s in self.tenants.items()},
            )

    def ops_state(self) -> tuple[OpCount, ...]:
        """The device counters' ``ops`` list."""
        with self.lock:
            return tuple(OpCount(op, pl, int(c), sec) for (op, pl), (c, sec) in sorted(self.ops.items()))

    def restore(self, runtime: RuntimeState, ops: Sequence[OpCount]) -> None:
        """Continue the cumulative series of a previous document (a restarted simulator).

        Gauges (queue length, model load, accuracy delta) are not restored: they described the
        previous process. Tenants this store does not serve are dropped, and so is a tenant whose
        histogram has other buckets than ours (its counts cannot be continued).
        """
        with self.lock:
            self.ops = {(o.op, o.placement): [o.count, o.seconds] for o in ops if o.placement in OP_PLACEMENTS}
            self.golden_checks = runtime.golden_checks_total
            self.golden_mismatches = runtime.golden_mismatches_total
            for tenant, t in runtime.tenants.items():
                if tenant not in self.tenants or len(t.buckets) != len(LATENCY_BUCKETS) + 1:
                    continue
                e = t.exemplar
                self.tenants[tenant] = TenantSeries(
                    bucket_counts=list(t.buckets), latency_sum=t.sum,
                    requests={**dict.fromkeys(REQUEST_OUTCOMES, 0),
                              **{k: v for k, v in t.requests.items() if k in REQUEST_OUTCOMES}},
                    cold_starts=t.cold_starts,
                    exemplar=Exemplar(*e) if e else None)


class Sink(Protocol):
    def series(self, identity: Identity) -> MemoryStore:
        """The store of one device identity (created on first use, then the same object)."""


# --- Prometheus exposition ----------------------------------------------------------------------------

_RUNTIME_METRICS = (
    "npu_inference_latency_seconds", "npu_inference_requests_total", "npu_inference_queue_length",
    "npu_model_load_seconds", "npu_model_cold_starts_total", "npu_ops_total", "npu_op_seconds_total",
    "npu_accuracy_delta_ratio", "npu_golden_checks_total", "npu_golden_mismatches_total",
)


class PrometheusSink(Collector):
    """The stores of one registry, rendered as the schema's runtime metrics at scrape time.

    One per registry (``for_registry``): a server may instrument several devices or models, each
    with its own ``Instrumentation``, and their series share the registry's metric families.
    """

    _by_registry: weakref.WeakKeyDictionary[CollectorRegistry, PrometheusSink] = weakref.WeakKeyDictionary()
    _registry_lock = threading.Lock()

    def __init__(self) -> None:
        self._stores: dict[Identity, MemoryStore] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None = None) -> PrometheusSink:
        """The sink registered in ``registry`` (prometheus_client's default registry when None)."""
        registry = REGISTRY if registry is None else registry
        with cls._registry_lock:
            sink = cls._by_registry.get(registry)
            if sink is None:
                sink = cls._by_registry[registry] = cls()
                registry.register(sink)
            return sink

    def series(self, identity: Identity) -> MemoryStore:
        with self._lock:
            store = self._stores.get(identity)
            if store is None:
                store = self._stores[identity] = MemoryStore().series(identity)
            return store

    def describe(self) -> list[Metric]:
        """The families this collector owns, so the registry refuses a second owner of a name."""
        return [family(n) for n in _RUNTIME_METRICS]

    def collect(self) -> list[Metric]:
        f = {n: family(n) for n in _RUNTIME_METRICS}
        with self._lock:
            stores = list(self._stores.values())
        for store in stores:
            with store.lock:
                _render(store, f)
        return non_empty(f.values())


def _render(store: MemoryStore, f: dict[str, Metric]) -> None:
    node, device, vendor, model = store.identity
    for tenant, s in store.tenants.items():
        key = [node, device, model, tenant]
        f["npu_inference_latency_seconds"].add_metric(key, _buckets(s), s.latency_sum)
        for outcome, n in s.requests.items():
            f["npu_inference_requests_total"].add_metric([*key, outcome], n)
        f["npu_inference_queue_length"].add_metric(key, s.queue_length)
        f["npu_model_cold_starts_total"].add_metric(key, s.cold_starts)
        if store.model_load_seconds is not None:
            f["npu_model_load_seconds"].add_metric(key, store.model_load_seconds)
        if tenant == store.canary_tenant:
            f["npu_golden_checks_total"].add_metric(key, store.golden_checks)
            f["npu_golden_mismatches_total"].add_metric(key, store.golden_mismatches)
            if store.accuracy_delta is not None:
                f["npu_accuracy_delta_ratio"].add_metric(key, store.accuracy_delta)
    add_ops(f["npu_ops_total"], f["npu_op_seconds_total"], [node, device, vendor],
            ((k, count, seconds) for k, (count, seconds) in store.ops.items()), placements=OP_PLACEMENTS)


def _buckets(s: TenantSeries) -> list[tuple]:
    """Cumulative (le, count[, exemplar]); the exemplar sits on the first bucket that holds it."""
    cumulative = itertools.accumulate(s.bucket_counts)
    e = s.exemplar
    return histogram_buckets(zip((*LATENCY_BUCKETS, float("inf")), cumulative, strict=True),
                             (e.trace_id, e.seconds, e.timestamp) if e is not None else None)
